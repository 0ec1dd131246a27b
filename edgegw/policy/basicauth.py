"""HTTP Basic authentication against an ``.htpasswd`` (SecurityPolicy ``basicAuth``).

Envoy Gateway accepts only ``{SHA}`` entries; people also paste what
``htpasswd`` makes by default (``$apr1$``, MD5-crypt) and with ``-B``
(bcrypt, ``$2y$``), as Traefik accepts them. The hashing is passlib's (the
maintained ``libpass`` fork): ``ldap_sha1``, ``apr_md5_crypt`` and ``bcrypt``
only. Plain-text and DES-crypt entries are refused when the Secret is read.

bcrypt is slow on purpose (milliseconds per check), so a verifier remembers
the outcome for the last ``CACHE_MAX`` distinct ``Authorization`` values it
saw, keyed by their SHA-256, never the credentials themselves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from passlib.hash import apr_md5_crypt, bcrypt, ldap_sha1

from edgegw import ir

CACHE_MAX = 4096
_SCHEMES = ((b"{SHA}", ldap_sha1), (b"$apr1$", apr_md5_crypt), (b"$2", bcrypt))
MAX_USERS = 10_000


def parse_htpasswd(data: bytes) -> tuple[tuple[str, bytes], ...]:
    """``user:hash`` lines → pairs; blank lines and ``#`` comments are skipped.

    Raises:
        ValueError: a line is not ``user:hash`` or its hash is of a kind not accepted
            (the message names the line, never the hash).
    """
    users: dict[str, bytes] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, hashed = line.partition(b":")
        if not sep or not user or not hashed:
            raise ValueError(f".htpasswd line {number}: want user:hash")
        if not any(hashed.startswith(prefix) for prefix, _ in _SCHEMES):
            raise ValueError(
                f".htpasswd line {number}: hash of user {user.decode('utf-8', 'replace')!r} "
                "is not {SHA}, $apr1$ or bcrypt"
            )
        users.setdefault(user.decode("utf-8", "replace"), hashed)
        if len(users) > MAX_USERS:
            raise ValueError(f".htpasswd: more than {MAX_USERS} users")
    if not users:
        raise ValueError(".htpasswd has no users")
    return tuple(users.items())


def verify(password: bytes, hashed: bytes) -> bool:
    """Whether ``password`` matches one ``.htpasswd`` hash."""
    for prefix, scheme in _SCHEMES:
        if hashed.startswith(prefix):
            try:
                return bool(scheme.verify(password, hashed))
            except ValueError:  # a malformed hash never matches
                return False
    return False


def credentials(header: str | None) -> tuple[str, bytes] | None:
    """``Basic base64(user:password)`` → (user, password); None when absent or malformed."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


class BasicAuthVerifier:
    """Checks ``Authorization`` headers against one policy's users."""

    __slots__ = ("_cache", "_users", "config")

    def __init__(self, config: ir.BasicAuth) -> None:
        self.config = config
        self._users = dict(config.users)
        self._cache: dict[bytes, str | None] = {}

    def user(self, header: str | None) -> str | None:
        """The authenticated user name, or None (the caller answers 401)."""
        if header is None:
            return None
        key = hashlib.sha256(header.encode("latin-1", "replace")).digest()
        if key in self._cache:
            return self._cache[key]
        found = self._check(header)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _check(self, header: str) -> str | None:
        pair = credentials(header)
        if pair is None:
            return None
        user, password = pair
        hashed = self._users.get(user)
        if hashed is None:
            return None
        return user if verify(password, hashed) else None
