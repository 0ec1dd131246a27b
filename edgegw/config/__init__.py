"""Config directory → typed resources: discover files, parse them, decode them, keep the last good.

``ConfigStore(root, state_dir).reload()`` is the one entry point most code
needs; ``config.watch`` decides *when* to call it.
"""

from __future__ import annotations

from edgegw.config.decode import KINDS, decode
from edgegw.config.discover import discover
from edgegw.config.parse import Document, parse
from edgegw.config.store import ConfigStore, LoadResult

__all__ = ["KINDS", "ConfigStore", "Document", "LoadResult", "decode", "discover", "parse"]
