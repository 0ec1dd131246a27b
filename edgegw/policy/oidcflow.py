"""SecurityPolicy ``oidc``: the messages of the code flow, built and read without I/O.

The authorization request (OpenID Connect Core 3.1.2.1, with RFC 7636 PKCE),
the token requests (RFC 6749 4.1.3 and 6, client authentication by HTTP Basic
as Envoy Gateway configures Envoy), the token response, the ID token's checks
(Core 3.1.3.7: issuer, audience, expiry, nonce, signature with the provider's
JWKS through ``jwtverify``), and the discovery document (OpenID Connect
Discovery 1.0 section 4). Sizes are bounded by the callers' reads and here.
"""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from edgegw import ir
from edgegw.policy import jwtverify as jv

MAX_TOKEN = 8 * 1024  # characters of one token the provider sends
MAX_DOCUMENT = 64 * 1024  # bytes of a token response or a discovery document


class Endpoints(NamedTuple):
    """A provider's endpoints, given in the policy or discovered."""

    authorization: str
    token: str
    end_session: str = ""
    jwks: str = ""


class Tokens(NamedTuple):
    access_token: str
    id_token: str
    refresh_token: str
    expires_in: float


class FlowError(ValueError):
    """The provider's answer cannot make a session; the message says why (no secrets)."""


def request_url(scheme: str, authority: str, path: str, query: str) -> str:
    return f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")


def authorize_url(
    config: ir.OIDC,
    endpoint: str,
    *,
    redirect_uri: str,
    state: str,
    nonce: str,
    challenge: str,
) -> str:
    """The authorization endpoint with the login's parameters (its own query kept)."""
    params = [
        ("client_id", config.client_id),
        ("response_type", "code"),
        ("scope", " ".join(config.scopes)),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        *(("resource", r) for r in config.resources),
    ]
    sep = "&" if "?" in endpoint else "?"
    return endpoint + sep + urlencode(params, quote_via=quote)


def token_request(config: ir.OIDC, fields: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    """(form body, Authorization value) of a token request; Basic auth as RFC 6749 2.3.1."""
    user = quote(config.client_id, safe="").encode()
    password = quote(config.client_secret.decode("utf-8", "replace"), safe="").encode()
    basic = b"Basic " + base64.b64encode(user + b":" + password)
    return urlencode(fields).encode(), basic


def code_fields(redirect_uri: str, code: str, verifier: str) -> list[tuple[str, str]]:
    return [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ]


def refresh_fields(refresh: str, scopes: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("scope", " ".join(scopes)),
    ]


def parse_tokens(
    status: int, body: bytes, default_ttl: float, *, need_id_token: bool = True
) -> Tokens:
    """The tokens of a token response. Raises: FlowError."""
    if status != 200:
        raise FlowError(f"the token endpoint answered {status}")
    document = _json_object(body)
    access, id_token = document.get("access_token"), document.get("id_token", "")
    refresh = document.get("refresh_token", "")
    if not isinstance(access, str) or not access:
        raise FlowError("no access_token in the token response")
    for name, value in (("id_token", id_token), ("refresh_token", refresh), ("", access)):
        if not isinstance(value, str) or len(value) > MAX_TOKEN:
            raise FlowError(f"{name or 'access_token'} is not a string of at most {MAX_TOKEN}")
    if need_id_token and not id_token:
        raise FlowError("no id_token in the token response")
    expires_in = document.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        if not default_ttl:
            raise FlowError("no expires_in in the token response and no defaultTokenTTL")
        expires_in = default_ttl
    return Tokens(access, id_token, refresh, float(min(expires_in, 10 * 365 * 86400)))


def check_id_token(
    config: ir.OIDC, token: str, nonce: str | None, keys: tuple[jv.Key, ...], now: float
) -> None:
    """OpenID Connect Core 3.1.3.7 for a token from the token endpoint. Raises: FlowError.

    ``nonce`` None: a refresh, whose new ID token need not carry one (Core 12.2).
    """
    parsed = jv.parse(token)
    if isinstance(parsed, jv.Status):
        raise FlowError(f"ID token: {parsed.message}")
    if parsed.issuer != config.provider.issuer and parsed.issuer.rstrip("/") != (
        config.provider.issuer
    ):
        raise FlowError("ID token: the issuer is not the provider's")
    if config.client_id not in parsed.audiences:
        raise FlowError("ID token: the client is not an audience")
    status = jv.check_time(parsed, now)
    if status is not jv.OK:
        raise FlowError(f"ID token: {status.message}")
    if nonce is not None and parsed.payload.get("nonce") != nonce:
        raise FlowError("ID token: the nonce is not the login's")
    status = jv.verify_signature(parsed, keys)
    if status is not jv.OK:
        raise FlowError(f"ID token: {status.message}")


def parse_discovery(body: bytes, issuer: str) -> Endpoints:
    """The endpoints of a discovery document. Raises: FlowError."""
    document = _json_object(body)
    found = {
        key: document.get(key, "")
        for key in ("authorization_endpoint", "token_endpoint", "end_session_endpoint", "jwks_uri")
    }
    for key, value in found.items():
        if not isinstance(value, str) or len(value) > 2048:
            raise FlowError(f"{key} is not a string")
    if not found["authorization_endpoint"] or not found["token_endpoint"]:
        raise FlowError("the document has no authorization_endpoint or token_endpoint")
    if str(document.get("issuer", issuer)).rstrip("/") != issuer.rstrip("/"):
        raise FlowError("the document's issuer is another")
    return Endpoints(
        found["authorization_endpoint"],
        found["token_endpoint"],
        found["end_session_endpoint"],
        found["jwks_uri"],
    )


def merged(config: ir.OIDCProvider, discovered: Endpoints | None) -> Endpoints | None:
    """The endpoints in force: the policy's where given (Envoy Gateway's precedence)."""
    if config.authorization_endpoint and config.token_endpoint and discovered is None:
        return Endpoints(
            config.authorization_endpoint, config.token_endpoint, config.end_session_endpoint
        )
    if discovered is None:
        return None
    return Endpoints(
        config.authorization_endpoint or discovered.authorization,
        config.token_endpoint or discovered.token,
        config.end_session_endpoint or discovered.end_session,
        discovered.jwks,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_DOCUMENT:
        raise FlowError(f"the document is larger than {MAX_DOCUMENT} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise FlowError("the document is not JSON") from None
    if not isinstance(document, dict):
        raise FlowError("the document is not a JSON object")
    return document
