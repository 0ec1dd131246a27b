"""Which files under the config directory are config.

Every ``*.yaml``, ``*.yml`` and ``*.json`` below the root, recursively, in a
stable (sorted, relative-path) order: that order decides which file wins when
two define the same resource. Hidden files and folders and editor leftovers are
skipped, so an editor's swap file or a ``.git`` directory never loads.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


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
    found: list[str] = []
    seen: set[str] = set()  # real paths: a symlink loop must not walk forever
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        found.extend((base / name).as_posix() for name in files if is_config_name(name))
    return sorted(found)
