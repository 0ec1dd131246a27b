"""Which files under the config directory are config.

Every ``*.yaml``, ``*.yml`` and ``*.json`` below the root, recursively, in a
stable (sorted, relative-path) order: that order decides which file wins when
two define the same resource. Hidden files and folders and editor leftovers are
skipped, so an editor's swap file or a ``.git`` directory never loads.

Only regular files (or symlinks to one) are config: opening a FIFO named
``x.yaml`` would block the loader until some process writes to it, and a
device or a socket is never a config file. Those, dangling symlinks and
symlink loops are skipped with a warning naming the path, so the user learns
why a file they see is not in force.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import msgspec

from edgegw.errors import ConfigError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class Found(msgspec.Struct, frozen=True):
    """The config files under a directory, and the paths skipped with a reason."""

    files: list[str]
    warnings: list[ConfigError]


def is_config_name(name: str) -> bool:
    """True for a file name edgegw reads; False for hidden files and editor leftovers."""
    if name.startswith(".") or name.endswith(("~", ".swp", ".swx")):
        return False
    return name.endswith(CONFIG_SUFFIXES)


def discover(root: Path) -> list[str]:
    """List config files under ``root`` as POSIX paths relative to it, sorted.

    Args:
        root: the config directory.

    Returns:
        Relative paths such as ``routes/app.yaml``; empty when ``root`` is missing.
    """
    return find(root).files


def find(root: Path) -> Found:
    """``discover`` and the warnings for what it skipped (see the module docstring)."""
    found: list[str] = []
    warnings: list[ConfigError] = []
    seen: set[str] = set()  # real paths: a symlink loop must not walk forever
    for folder, dirs, files in os.walk(root, followlinks=True):
        base = Path(folder).relative_to(root)
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            warnings.append(_skipped(base.as_posix(), "a symlink loop (directory already read)"))
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if is_config_name(name):
                path = base / name
                problem = _not_regular(Path(folder) / name)
                if problem:
                    warnings.append(_skipped(path.as_posix(), problem))
                else:
                    found.append(path.as_posix())
    return Found(sorted(found), sorted(warnings, key=lambda w: w.file))


def _not_regular(path: Path) -> str:
    """Why ``path`` is not a regular file to read, or "" when it is one."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if path.is_symlink():
            return "a dangling symlink"
        return ""  # vanished since the listing: the next reload sees it gone
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return "not a regular file"


def _skipped(path: str, why: str) -> ConfigError:
    return ConfigError(path or ".", 0, "", f"{why}; skipped")
