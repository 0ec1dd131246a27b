"""The cryptography of SecurityPolicy ``oidc`` sessions: keys, signed cookies, CSRF, state.

Theory of operation
-------------------
edgegw keeps one random 32-byte root key (``net/oidckey.py``, in the state
directory, shared by every worker); each policy gets its own key,
``HMAC-SHA256(root, "edgegw oidc" + policy name)``, and from it one subkey per
use (``Keys``), so a cookie signed for one policy or one purpose is worthless
for another. This is Envoy Gateway's HMAC secret, per policy.

A session is the cookies Envoy's oauth2 filter sets: the tokens (access, ID,
refresh), ``OauthExpires`` (POSIX seconds) and ``OauthHMAC``, an HMAC over
the host (or the cookie domain), the expiry and the three token cookies as
sent. A session is valid when that HMAC matches (``hmac.compare_digest``) and
the expiry is ahead. Tokens are encrypted in their cookies (AES-256-GCM, a
random nonce each) unless ``disableTokenEncryption``, so a browser extension
or a log of cookies never holds a usable bearer token.

The CSRF token of a login is ``<random>.<HMAC(random)>`` in the ``OauthNonce``
cookie and in ``state`` (base64url JSON with the original URL), as Envoy does
(OWASP's signed double-submit cookie). The OIDC ``nonce`` and the PKCE code
verifier are HMACs of the CSRF token under their own subkeys: nothing more to
store, and neither can be computed without the key.

Every input from a client is bounded before work is done on it (``MAX_*``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_STATE = 4096  # characters of a state parameter
MAX_COOKIE = 8192  # characters of one cookie value edgegw reads
MAX_URL = 2048  # characters of the original URL carried in state
_DELETED = "deleted; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT"


class Keys(NamedTuple):
    """One policy's subkeys, each for one purpose."""

    session: bytes  # OauthHMAC
    csrf: bytes
    nonce: bytes
    pkce: bytes
    cipher: AESGCM


def policy_keys(root: bytes, policy: str) -> Keys:
    """The keys of the policy named ``policy`` ("namespace/name")."""
    key = hmac.digest(root, b"edgegw oidc\x00" + policy.encode(), "sha256")

    def sub(label: bytes) -> bytes:
        return hmac.digest(key, label, "sha256")

    return Keys(sub(b"session"), sub(b"csrf"), sub(b"nonce"), sub(b"pkce"), AESGCM(sub(b"aes")))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Raises: ValueError."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("bad base64url") from exc


# --- the session -------------------------------------------------------------------------


def session_hmac(keys: Keys, host: str, expires: str, access: str, id_: str, refresh: str) -> str:
    """The ``OauthHMAC`` value over the host, the expiry and the token cookies as sent."""
    payload = "\n".join((host, expires, access, id_, refresh)).encode("utf-8", "replace")
    return b64url(hmac.digest(keys.session, payload, "sha256"))


def session_valid(
    keys: Keys, host: str, expires: str, tokens: tuple[str, str, str], mac: str
) -> bool:
    """The HMAC matches (constant time); the expiry is the caller's to check."""
    if not mac or len(mac) > 64 or not expires.isdigit() or len(expires) > 12:
        return False
    expected = session_hmac(keys, host, expires, *tokens)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def seal(keys: Keys, token: str, encrypt: bool) -> str:
    """A token as its cookie holds it."""
    if not encrypt or not token:
        return token
    nonce = secrets.token_bytes(12)
    return b64url(nonce + keys.cipher.encrypt(nonce, token.encode(), b"edgegw oidc"))


def unseal(keys: Keys, value: str, encrypt: bool) -> str | None:
    """The token a cookie holds; None when it was not sealed by this policy."""
    if not encrypt:
        return value
    try:
        raw = unb64url(value)
        return keys.cipher.decrypt(raw[:12], raw[12:], b"edgegw oidc").decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        return None


# --- a login: CSRF token, nonce, PKCE, state ---------------------------------------------


def new_csrf(keys: Keys) -> str:
    """``<random>.<HMAC(random)>``: unguessable and, without the key, unforgeable."""
    rand = secrets.token_urlsafe(24)
    return f"{rand}.{b64url(hmac.digest(keys.csrf, rand.encode(), 'sha256'))}"


def flow_id(csrf: str) -> str:
    """The login's id, for its cookie's name: a prefix of the token's random part."""
    return "".join(c for c in csrf.partition(".")[0][:12] if c.isalnum() or c in "-_")


def csrf_valid(keys: Keys, token: str) -> bool:
    rand, dot, mac = token.partition(".")
    if not dot or len(token) > 128:
        return False
    expected = b64url(hmac.digest(keys.csrf, rand.encode(), "sha256"))
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def nonce_for(keys: Keys, csrf: str) -> str:
    """The OIDC ``nonce`` of the login whose CSRF token is ``csrf``."""
    return b64url(hmac.digest(keys.nonce, csrf.encode(), "sha256"))


def verifier_for(keys: Keys, csrf: str) -> str:
    """The PKCE code verifier (RFC 7636: 43 characters of base64url) of that login."""
    return b64url(hmac.digest(keys.pkce, csrf.encode(), "sha256"))


def challenge_for(verifier: str) -> str:
    """The S256 code challenge of ``verifier``."""
    return b64url(hashlib.sha256(verifier.encode()).digest())


def encode_state(url: str, csrf: str) -> str:
    """Envoy's state: base64url of ``{"url": ..., "csrf_token": ...}``."""
    return b64url(json.dumps({"url": url, "csrf_token": csrf}, separators=(",", ":")).encode())


def decode_state(state: str) -> tuple[str, str] | None:
    """(url, csrf token), or None for anything malformed or too large."""
    if len(state) > MAX_STATE:
        return None
    try:
        document = json.loads(unb64url(state))
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    url, csrf = document.get("url"), document.get("csrf_token")
    if not isinstance(url, str) or not isinstance(csrf, str) or len(url) > MAX_URL:
        return None
    return url, csrf


# --- Set-Cookie --------------------------------------------------------------------------


def set_cookie(name: str, value: str, max_age: int, domain: str, same_site: str) -> bytes:
    """A cookie as Envoy's oauth2 filter sets it: path=/, Secure, HttpOnly."""
    tail = f";path=/;Max-Age={max(0, max_age)};secure;HttpOnly"
    if domain:
        tail += f";domain={domain}"
    if same_site:
        tail += f";SameSite={same_site}"
    return f"{name}={value}{tail}".encode("latin-1", "replace")


def delete_cookie(name: str) -> bytes:
    return f"{name}={_DELETED}".encode("latin-1", "replace")


def parse_cookies(value: str | None, wanted: frozenset[str]) -> dict[str, str]:
    """The ``wanted`` cookies of a Cookie header (first of each name), values bounded."""
    found: dict[str, str] = {}
    if not value:
        return found
    for part in value.split(";", 256)[:256]:
        name, sep, val = part.strip().partition("=")
        if sep and name in wanted and name not in found and len(val) <= MAX_COOKIE:
            found[name] = val
    return found


def strip_cookies(value: str, names: frozenset[str], prefix: str = "\0") -> str:
    """The Cookie header without ``names`` and names starting with ``prefix``."""
    kept = []
    for part in value.split(";"):
        name = part.strip().partition("=")[0]
        if name and name not in names and not name.startswith(prefix):
            kept.append(part.strip())
    return "; ".join(kept)
