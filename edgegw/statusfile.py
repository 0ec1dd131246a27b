"""Write the gateway's status to ``STATE_DIR/status.yaml``, atomically.

Tools that cannot reach the admin API (a shell script, a monitoring agent
reading files) get the same document from disk. Written to a temporary file
and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


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


def write_status(state_dir: Path, document: dict[str, Any]) -> None:
    """Write the ``/api/status`` document as YAML to ``state_dir/status.yaml``."""
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    write_atomic(state_dir / "status.yaml", text.encode())
