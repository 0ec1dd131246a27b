"""The root of the OIDC session keys: 32 random bytes edgegw generates once and keeps.

Envoy Gateway's certgen job makes an HMAC secret (``envoy-oidc-hmac``) that
signs every OIDC cookie; edgegw keeps its own in ``STATE_DIR/oidc-hmac.key``
(mode 0600), so sessions survive restarts and every ``--workers`` process
signs and checks with the same key. Creation is atomic: the key is written
to a temporary file and hard-linked into place, and whoever loses that race
reads the winner's key. Without a state directory the key lives in memory
(sessions end with the process). The key is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("edgegw.oidc")

KEY_FILE = "oidc-hmac.key"
KEY_BYTES = 32


def load_or_create(directory: Path | None) -> bytes:
    """The root key in ``directory`` (created when missing), or a fresh one in memory."""
    if directory is None:
        return secrets.token_bytes(KEY_BYTES)
    path = directory / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("OIDC key %s unusable (%s); sessions will not survive a restart", path, exc)
        return secrets.token_bytes(KEY_BYTES)
    try:
        return _create(path)
    except OSError as exc:
        log.warning("cannot keep the OIDC key in %s (%s); keeping it in memory", directory, exc)
        return secrets.token_bytes(KEY_BYTES)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{len(key)} bytes, not {KEY_BYTES}")
    return key


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another worker was first: use its key
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)
