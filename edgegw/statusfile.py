"""Write the gateway's status to ``STATE_DIR/status.yaml``, atomically, off the event loop.

Tools that cannot reach the admin API (a shell script, a monitoring agent
reading files) get the same document from disk. Written to a temporary file
and renamed, so a reader never sees half a file.

For 10,000 routes the document is about 7 MB of YAML: seconds of work and an
fsync. ``serve_status_file`` does it in a worker thread and always writes the
latest document only, so a burst of reloads is one write and a reload never
waits for the disk. The YAML is emitted one resource at a time: libyaml's
emitter keeps the GIL for the whole of one call (over a second for the full
document), which would stall the event loop; one resource is well under a
millisecond, and the text is the same.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import trio
import yaml

log = logging.getLogger("edgegw")

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def to_yaml(document: dict[str, Any]) -> str:
    """``yaml.safe_dump(document, sort_keys=False)``, one list item per emitter call.

    The document's own keys are plain words (``generation``, ``resources``...).
    """
    parts: list[str] = []
    for key, value in document.items():
        if isinstance(value, list) and value:
            parts.append(f"{key}:\n")
            parts.extend(_dump([item]) for item in value)
        else:
            parts.append(_dump({key: value}))
    return "".join(parts)


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def write_status(state_dir: Path, document: dict[str, Any]) -> None:
    """Write the ``/api/status`` document as YAML to ``state_dir/status.yaml``."""
    write_atomic(state_dir / "status.yaml", to_yaml(document).encode())


class StatusFile:
    """The latest status document waiting to be written (see ``serve_status_file``)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pending: dict[str, Any] | None = None
        self.changed = trio.Event()
        self.written = 0  # documents written, for tests and logs

    def submit(self, document: dict[str, Any]) -> None:
        """Ask for ``document`` to be written; replaces one not written yet."""
        self.pending = document
        self.changed.set()


async def serve_status_file(
    status: StatusFile, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Write each submitted document in a worker thread, the latest one first, until cancelled."""
    task_status.started()
    while True:
        await status.changed.wait()
        status.changed = trio.Event()
        document, status.pending = status.pending, None
        if document is None:
            continue
        try:
            await trio.to_thread.run_sync(
                write_status, status.state_dir, document, abandon_on_cancel=True
            )
            status.written += 1
        except OSError as exc:
            log.warning("cannot write %s/status.yaml: %s", status.state_dir, exc)


async def flush(status: StatusFile) -> None:
    """Write the document still waiting, if any: at shutdown, the last status goes to disk."""
    document, status.pending = status.pending, None
    if document is not None:
        try:
            await trio.to_thread.run_sync(write_status, status.state_dir, document)
        except OSError as exc:
            log.warning("cannot write %s/status.yaml: %s", status.state_dir, exc)
