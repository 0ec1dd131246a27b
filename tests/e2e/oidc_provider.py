"""A small, honest OpenID Connect provider for the tests (Debian packages none that starts fast).

Discovery, an authorization endpoint that logs ``alice`` in at once (a
provider with a remembered session), a token endpoint (client secret by HTTP
Basic, codes used once, redirect URI and PKCE S256 checked, refresh tokens),
the JWKS and an end-session endpoint. ID tokens are RS256 with PyJWT and carry
the login's nonce. It counts what it was asked, so tests can check what the
gateway did.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "edgegw-app"
CLIENT_SECRET = "s3cr3t-client-value"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Provider(http.server.ThreadingHTTPServer):
    """The provider's state; ``issuer`` is its base URL."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.issuer = f"http://127.0.0.1:{self.server_address[1]}"
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.hits: dict[str, int] = {}
        self.expires_in = 300
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Provider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def id_token(self, nonce: str | None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "alice", "iat": now}
        body |= {"exp": now + 300, **({"nonce": nonce} if nonce else {}), **claims}
        return pyjwt.encode(body, KEY, algorithm="RS256", headers={"kid": "k1"})

    def tokens(self, nonce: str | None) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(16)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": "at-" + secrets.token_urlsafe(16),
            "id_token": self.id_token(nonce),
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Provider

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self._count(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            issuer = self.server.issuer
            return self._json(
                200,
                {
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "jwks_uri": f"{issuer}/jwks",
                    "end_session_endpoint": f"{issuer}/logout",
                },
            )
        if url.path == "/jwks":
            jwk = {**json.loads(RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "k1"}
            return self._json(200, {"keys": [jwk]})
        if url.path == "/authorize":
            return self._authorize(query)
        return self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        self._count(self.path)
        length = int(self.headers.get("content-length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.path != "/token" or self.headers.get("authorization") != f"Basic {basic}":
            return self._json(401, {"error": "invalid_client"})
        if form.get("grant_type") == "refresh_token":
            with self.server.lock:
                known = form.get("refresh_token") in self.server.refresh_tokens
            if not known:
                return self._json(400, {"error": "invalid_grant"})
            return self._json(200, self.server.tokens(None))
        with self.server.lock:
            login = self.server.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if (
            login is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != login["redirect_uri"]
            or challenge.rstrip(b"=").decode() != login["challenge"]
        ):
            return self._json(400, {"error": "invalid_grant"})
        return self._json(200, self.server.tokens(login["nonce"]))

    def _authorize(self, query: dict[str, str]) -> None:
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("response_type") != "code"
            or "openid" not in query.get("scope", "").split()
            or query.get("code_challenge_method") != "S256"
        ):
            return self._json(400, {"error": "invalid_request"})
        code = secrets.token_urlsafe(16)
        with self.server.lock:
            self.server.codes[code] = {
                "redirect_uri": query["redirect_uri"],
                "nonce": query.get("nonce", ""),
                "challenge": query.get("code_challenge", ""),
            }
        location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _json(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _count(self, path: str) -> None:
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1

    def log_message(self, format: str, *args: Any) -> None:
        pass
