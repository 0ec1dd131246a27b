"""One JSON Web Token checked against one provider, in the order Envoy's jwt_authn checks it.

Theory of operation
-------------------
The JOSE work is PyJWT's: it splits and decodes the compact form
(``PyJWS.decode_complete`` without verification), turns each JWK into a
``cryptography`` key (``PyJWK``), and checks a signature with the algorithm
the token names (``Algorithm.verify``). What is Envoy's, and so written here,
is the order of the checks and the status each failure gets, since that is
what a client sees in the 401 body: the token's form; its issuer; ``nbf`` and
``exp`` with 60 s of clock skew; its audiences (``https://`` and ``http://``
prefixes and a trailing slash ignored on both sides, as jwt_verify_lib
does); then the keys: a JWK is a candidate when its ``kid`` and ``alg`` (where
both sides have one) equal the token's, and its type fits the token's
algorithm (RSA for RS*/PS*, EC on the matching curve for ES*, oct for HS*,
OKP for EdDSA), so a public key can never be used as an HMAC secret. No
candidate: "Jwks doesn't have key to match kid or alg from Jwt"; candidates
that all fail: "Jwt verification fails".

``alg: none`` and any algorithm Envoy does not implement are refused before a
key is looked at. Tokens over ``MAX_TOKEN`` bytes and key sets over
``MAX_KEYS`` keys are refused, so a client or a JWKS server bounds our work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from jwt import PyJWK, PyJWS
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.exceptions import PyJWTError

MAX_TOKEN = 8 * 1024
MAX_KEYS = 100
CLOCK_SKEW = 60  # seconds, Envoy's default


class Status(NamedTuple):
    """An outcome as Envoy reports it: the HTTP status (0: verified) and its words."""

    code: int
    message: str


OK = Status(0, "OK")
MISSING = Status(401, "Jwt is missing")
NOT_YET_VALID = Status(401, "Jwt not yet valid")
EXPIRED = Status(401, "Jwt is expired")
BAD_FORMAT = Status(
    401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
)
TOO_LARGE = Status(401, "Jwt is too large")  # edgegw's: Envoy has no such bound
HEADER_BASE64 = Status(401, "Jwt header is an invalid Base64url encoded")
HEADER_JSON = Status(401, "Jwt header is an invalid JSON")
BAD_ALG = Status(401, "Jwt header [alg] field is required and must be a string")
ALG_NOT_IMPLEMENTED = Status(401, "Jwt header [alg] is not supported")
BAD_KID = Status(401, "Jwt header [kid] field is not a string")
PAYLOAD_BASE64 = Status(401, "Jwt payload is an invalid Base64url encoded")
PAYLOAD_JSON = Status(401, "Jwt payload is an invalid JSON")
ISS_NOT_STRING = Status(401, "Jwt payload [iss] field is not a string")
AUD_NOT_STRING = Status(401, "Jwt payload [aud] field is not a string or string list")
SIGNATURE_BASE64 = Status(401, "Jwt signature is an invalid Base64url encoded")
UNKNOWN_ISSUER = Status(401, "Jwt issuer is not configured")
AUDIENCE_NOT_ALLOWED = Status(403, "Audiences in Jwt are not allowed")
VERIFICATION_FAILS = Status(401, "Jwt verification fails")
NO_VALID_KEYS = Status(401, "Jwks doesn't have any valid public key")
KID_ALG_MISMATCH = Status(401, "Jwks doesn't have key to match kid or alg from Jwt")
FETCH_FAILED = Status(401, "Jwks remote fetch is failed")

# the algorithms Envoy implements, and the key each needs: (kty, crv or None)
_FITS: dict[str, tuple[str, str | None]] = {
    **{f"{p}{n}": ("RSA", None) for p in ("RS", "PS") for n in (256, 384, 512)},
    **{f"HS{n}": ("oct", None) for n in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
_ALGORITHMS: dict[str, Algorithm] = {
    name: algorithm for name, algorithm in get_default_algorithms().items() if name in _FITS
}
_JWS = PyJWS()
_PARSE = {"verify_signature": False}
# PyJWT's parse errors (by the words it uses) → Envoy's status
_PARSE_ERRORS = (
    ("header padding", HEADER_BASE64),
    ("header string", HEADER_JSON),
    ("payload padding", PAYLOAD_BASE64),
    ("crypto padding", SIGNATURE_BASE64),
    ("Key ID", BAD_KID),
)


@dataclass(frozen=True, slots=True)
class Key:
    """One usable JWK: the ``cryptography`` public key (bytes for an oct secret)."""

    kid: str | None
    alg: str | None  # the JWK's own ``alg``, when it names one
    kty: str
    crv: str | None
    key: Any


def parse_jwks(data: bytes | str) -> tuple[Key, ...]:
    """A JWKS document → its usable keys; keys of unknown types are skipped.

    Raises:
        ValueError: not a JWKS, or not one usable key in it (Envoy's words).
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("Jwks is an invalid JSON") from None
    if not isinstance(doc, dict) or "keys" not in doc:
        raise ValueError("Jwks does not have [keys] field")
    if not isinstance(doc["keys"], list):
        raise ValueError("[keys] in Jwks is not an array")
    keys = tuple(k for k in map(_key, doc["keys"][:MAX_KEYS]) if k is not None)
    if not keys:
        raise ValueError(NO_VALID_KEYS.message)
    return keys


def _key(jwk: Any) -> Key | None:
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    try:
        parsed = PyJWK(jwk)
    except (PyJWTError, ValueError, TypeError, KeyError):
        return None
    key = parsed.key
    if hasattr(key, "public_key"):  # a private JWK pasted by mistake: only its public half
        key = key.public_key()
    kid, alg, crv = jwk.get("kid"), jwk.get("alg"), jwk.get("crv")
    return Key(
        kid=kid if isinstance(kid, str) else None,
        alg=alg if isinstance(alg, str) else None,
        kty=str(jwk["kty"]),
        crv=crv if isinstance(crv, str) else None,
        key=key,
    )


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed, not yet verified, token."""

    alg: str
    kid: str | None
    payload: dict[str, Any]
    issuer: str
    audiences: tuple[str, ...]
    signing_input: bytes
    signature: bytes


def parse(token: str) -> Token | Status:
    """The compact form → a ``Token``, or the status saying why it is not one."""
    if len(token) > MAX_TOKEN:
        return TOO_LARGE
    if token.count(".") != 2:
        return BAD_FORMAT
    try:
        parts = _JWS.decode_complete(token, options=_PARSE)  # type: ignore[arg-type]
    except PyJWTError as exc:
        words = str(exc)
        return next((status for text, status in _PARSE_ERRORS if text in words), BAD_FORMAT)
    header = parts["header"]
    alg = header.get("alg")
    if not isinstance(alg, str):
        return BAD_ALG
    if alg not in _ALGORITHMS:
        return ALG_NOT_IMPLEMENTED
    try:
        payload = msgspec.json.decode(parts["payload"])
    except msgspec.DecodeError:
        return PAYLOAD_JSON
    if not isinstance(payload, dict):
        return PAYLOAD_JSON
    return _claims(token, alg, header.get("kid"), payload, parts["signature"])


def _claims(
    token: str, alg: str, kid: str | None, payload: dict[str, Any], signature: bytes
) -> Token | Status:
    issuer = payload.get("iss", "")
    if not isinstance(issuer, str):
        return ISS_NOT_STRING
    aud = payload.get("aud", ())
    audiences = (aud,) if isinstance(aud, str) else aud
    if not isinstance(audiences, list | tuple) or not all(isinstance(a, str) for a in audiences):
        return AUD_NOT_STRING
    for name in ("exp", "nbf"):
        value = payload.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Status(401, f"Jwt payload [{name}] field is not an integer")
        if not 0 <= value < 2**64:
            return Status(401, f"Jwt payload [{name}] field is not a positive 64 bit integer")
    signing_input = token.rpartition(".")[0].encode("ascii")
    return Token(alg, kid, payload, issuer, tuple(audiences), signing_input, signature)


def check_time(token: Token, now: float) -> Status:
    """``nbf`` and ``exp`` with Envoy's clock skew; a token without ``exp`` never expires."""
    nbf, exp = token.payload.get("nbf", 0), token.payload.get("exp", 0)
    if now + CLOCK_SKEW < nbf:
        return NOT_YET_VALID
    if exp and now > exp + CLOCK_SKEW:
        return EXPIRED
    return OK


def audiences_allowed(allowed: frozenset[str], token: Token) -> bool:
    """Any of the token's audiences in ``allowed`` (already sanitized); none configured: any."""
    return not allowed or any(sanitize_audience(a) in allowed for a in token.audiences)


def sanitize_audience(audience: str) -> str:
    """jwt_verify_lib's comparison form: no ``http(s)://`` prefix, no trailing slash."""
    for prefix in ("https://", "http://"):
        if audience.startswith(prefix):
            audience = audience[len(prefix) :]
            break
    return audience[:-1] if audience.endswith("/") else audience


def verify_signature(token: Token, keys: tuple[Key, ...]) -> Status:
    """OK when one candidate key verifies the signature (see the module docstring)."""
    matched = False
    algorithm = _ALGORITHMS[token.alg]
    kty, crv = _FITS[token.alg]
    for key in keys:
        if token.kid and key.kid and key.kid != token.kid:
            continue
        if key.alg and key.alg != token.alg:
            continue
        matched = True
        if key.kty != kty or (crv is not None and key.crv != crv):
            continue
        try:
            if algorithm.verify(token.signing_input, key.key, token.signature):
                return OK
        except (ValueError, TypeError, PyJWTError):
            continue
    return VERIFICATION_FAILS if matched else KID_ALG_MISMATCH
