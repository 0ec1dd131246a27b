"""The effective config as ``/api/config`` shows it: everything but key material.

The IR carries what the data plane needs, private keys and CA bundles
included, as bytes. None of it is for an admin answer: a private key must
never leave the process, and a dump that shows some PEM invites copying it
somewhere. So every bytes value becomes a placeholder that says how long it
was and a short SHA-256 prefix (enough to tell two certificates apart, useless
for recovering them). Strings pass through: the IR keeps no secret in a string.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec


def redacted(value: Any) -> Any:
    """``msgspec.to_builtins(value)`` with each bytes value replaced by a placeholder."""
    return _walk(msgspec.to_builtins(value, builtin_types=(bytes,)))


def _walk(node: Any) -> Any:
    if isinstance(node, bytes):
        return f"<redacted: {len(node)} bytes, sha256 {hashlib.sha256(node).hexdigest()[:12]}>"
    if isinstance(node, dict):
        return {_key(key): _walk(item) for key, item in node.items()}
    if isinstance(node, list | tuple):
        return [_walk(item) for item in node]
    return node


def _key(key: Any) -> Any:
    """Keys are names (a header's, say), never secrets; JSON wants them as text."""
    return key.decode("latin-1") if isinstance(key, bytes) else key
