"""The config directory as typed resources, keeping each file's last good version.

Theory of operation
-------------------
``reload()`` rescans the whole directory but re-reads only files whose
(mtime, ctime, size, inode) changed. Each file is all or nothing: when every
document in it decodes, its resources become the file's *good* version; when
anything in it fails (YAML, validation), the errors are reported and the
previous good version stays in force, so a half-saved edit never drops
traffic. A deleted file takes its resources with it.

The good versions of all files are then merged in path order: a resource
(kind, namespace, name) defined twice keeps the first file's definition and
reports the second. Last, the store stamps what Kubernetes' API server would:
``metadata.generation`` (1 when first seen, +1 whenever the content outside
metadata and status changes) and, for resources without one, a
``creationTimestamp`` of the moment edgegw first loaded them. Both are
persisted in ``STATE_DIR/resources.json`` so they survive restarts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from edgegw.api import Object, Resources, Timestamp, build_resources
from edgegw.api.meta import enc_hook
from edgegw.config.bounds import MAX_FILE_BYTES
from edgegw.config.decode import decode
from edgegw.config.discover import find
from edgegw.config.parse import parse
from edgegw.errors import ConfigError, UnknownKind

log = logging.getLogger("edgegw.config")

Key = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name
Stamp = tuple[int, int, int, int]
STATE_FILE = "resources.json"


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one reload produced: the resources in force, and what is wrong or ignored."""

    resources: Resources
    errors: tuple[ConfigError, ...] = ()
    warnings: tuple[ConfigError, ...] = ()


class _Tracked(msgspec.Struct, kw_only=True, rename="camel"):
    """What the store remembers about one resource, in memory and in the state file."""

    generation: int
    digest: str
    first_seen: float


@dataclass
class _FileState:
    stamp: Stamp | None = None
    good: tuple[tuple[Object, str], ...] | None = None  # (resource, content digest)
    errors: tuple[ConfigError, ...] = ()
    warnings: tuple[ConfigError, ...] = ()


@dataclass
class ConfigStore:
    """Loads ``root`` on each ``reload()``; keeps state between reloads (and in ``state_dir``)."""

    root: Path
    state_dir: Path | None = None
    _files: dict[str, _FileState] = field(default_factory=dict, init=False)
    _tracked: dict[Key, _Tracked] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._tracked = self._load_state()

    def reload(self) -> LoadResult:
        """Rescan the directory and return every resource in force.

        Returns:
            The merged resources of every file's last good version, with the
            errors and warnings of the current files. Never raises for a bad file.
        """
        found = find(self.root)
        names = found.files
        self._files = {name: self._refresh(name, self._files.get(name)) for name in names}
        merged, duplicates = self._merge()
        resources, changed = self._stamp(merged)
        if changed:
            self._save_state()
        errors = [e for name in names for e in self._files[name].errors]
        warnings = [w for name in names for w in self._files[name].warnings]
        return LoadResult(
            resources=build_resources(resources),
            errors=(*errors, *duplicates),
            warnings=(*found.warnings, *warnings),
        )

    # --- per file -------------------------------------------------------------------------

    def _refresh(self, name: str, state: _FileState | None) -> _FileState:
        """Re-read ``name`` if it changed since last time."""
        state = state or _FileState()
        try:
            info = (self.root / name).stat()
        except OSError:
            return _FileState(good=state.good)  # vanished mid-scan: next reload drops it
        stamp = (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino)
        if stamp == state.stamp:
            return state
        good, errors, warnings = _load_file(self.root, name)
        return _FileState(
            stamp=stamp,
            good=good if not errors else state.good,
            errors=errors,
            warnings=warnings,
        )

    def _merge(self) -> tuple[dict[Key, tuple[Object, str]], list[ConfigError]]:
        """Every file's good resources; the first definition of a resource wins."""
        merged: dict[Key, tuple[Object, str]] = {}
        duplicates: list[ConfigError] = []
        for state in self._files.values():  # discover() order: sorted paths
            for obj, digest in state.good or ():
                key = _key(obj)
                first = merged.get(key)
                if first is None:
                    merged[key] = (obj, digest)
                    continue
                where = f"{first[0].source.file}:{first[0].source.line}"
                duplicates.append(
                    ConfigError(
                        obj.source.file,
                        obj.source.line,
                        "metadata.name",
                        f"{key[0]} {_display(key)} is already defined at {where}; ignored",
                    )
                )
        return merged, duplicates

    # --- generation and age ---------------------------------------------------------------

    def _stamp(self, merged: dict[Key, tuple[Object, str]]) -> tuple[list[Object], bool]:
        """Fill ``generation`` and a missing ``creationTimestamp``; forget what is gone."""
        now = time.time()
        changed = set(self._tracked) != set(merged)
        tracked: dict[Key, _Tracked] = {}
        out: list[Object] = []
        for key, (obj, digest) in merged.items():
            before = self._tracked.get(key)
            seen = _next_tracked(before, digest, now)
            changed = changed or seen is not before
            tracked[key] = seen
            out.append(_with_generation(obj, seen))
        self._tracked = tracked
        return out, changed

    def _load_state(self) -> dict[Key, _Tracked]:
        if self.state_dir is None:
            return {}
        path = self.state_dir / STATE_FILE
        try:
            raw = msgspec.json.decode(path.read_bytes(), type=dict[str, _Tracked])
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return {}
        return {_parse_key(k): v for k, v in raw.items() if k.count("/") == 2}

    def _save_state(self) -> None:
        """Write the state file atomically: a crash leaves the old or the new, never half."""
        if self.state_dir is None:
            return
        data = {"/".join(key): value for key, value in sorted(self._tracked.items())}
        path = self.state_dir / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.tmp")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(msgspec.json.format(msgspec.json.encode(data)))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)


def _load_file(
    root: Path, name: str
) -> tuple[tuple[tuple[Object, str], ...], tuple[ConfigError, ...], tuple[ConfigError, ...]]:
    """Read, parse and decode one file: (resources with digests, errors, warnings)."""
    try:
        text = read_config_file(root, name).decode("utf-8")
        documents = parse(name, text)
    except ConfigError as exc:
        return (), (exc,), ()
    except (OSError, UnicodeDecodeError) as exc:
        return (), (ConfigError(name, 0, "", f"cannot read file: {exc}"),), ()
    good: list[tuple[Object, str]] = []
    errors: list[ConfigError] = []
    warnings: list[ConfigError] = []
    for doc in documents:
        try:
            obj = decode(doc)
        except UnknownKind as warning:
            warnings.append(warning)
        except ConfigError as error:
            errors.append(error)
        else:
            good.append((obj, content_digest(obj)))
    return tuple(good), tuple(errors), tuple(warnings)


def read_config_file(root: Path, name: str) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``.

    Opened non-blocking, so a FIFO put there since the directory was listed
    cannot block the loader; it, and any other file that is not regular,
    fails the check that follows.

    Raises:
        ConfigError: the file is too large or not a regular file.
        OSError: it cannot be read.
    """
    fd = os.open(root / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(name, 0, "", "not a regular file; not read")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(name, 0, "", f"larger than {MAX_FILE_BYTES >> 20} MiB; not read")
    return data


def _next_tracked(before: _Tracked | None, digest: str, now: float) -> _Tracked:
    """Generation 1 for a new resource, +1 when its content changed, else unchanged."""
    if before is None:
        return _Tracked(generation=1, digest=digest, first_seen=now)
    if before.digest != digest:
        return _Tracked(
            generation=before.generation + 1, digest=digest, first_seen=before.first_seen
        )
    return before


def _with_generation(obj: Object, seen: _Tracked) -> Object:
    meta = obj.metadata
    created = meta.creation_timestamp
    if created is None:
        created = Timestamp(seen.first_seen)
    meta = msgspec.structs.replace(meta, generation=seen.generation, creation_timestamp=created)
    return msgspec.structs.replace(obj, metadata=meta)


def content_digest(obj: Object) -> str:
    """A hash of everything but metadata, status and source: what bumps ``generation``."""
    fields = {f: getattr(obj, f) for f in obj.__struct_fields__}
    for name in ("metadata", "source", "api_version", "kind"):
        fields.pop(name, None)
    encoded = msgspec.json.encode(fields, enc_hook=enc_hook, order="sorted")
    return hashlib.sha256(encoded).hexdigest()[:32]


def _key(obj: Object) -> Key:
    return (type(obj).__name__, obj.metadata.namespace or "", obj.metadata.name)


def _parse_key(text: str) -> Key:
    kind, namespace, name = text.split("/")
    return (kind, namespace, name)


def _display(key: Key) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]
