"""An RFC 8555 ACME client under trio: account, order, challenges, finalize, download.

Theory of operation
-------------------
Libraries: ``httpx`` speaks HTTP (it runs under trio through anyio), and
``josepy`` holds the account key as a JWK, computes its thumbprint and signs
(RS256/ES256); the flattened JWS of RFC 8555 §6.2 is three base64url fields
around that signature. certbot's ``acme`` package was not used: it is
synchronous and has dropped TLS-ALPN-01.

Every POST carries a fresh nonce, taken from the previous response's
``Replay-Nonce`` or from ``newNonce``; a ``badNonce`` error is retried with
the nonce it came with (servers reject some on purpose: Pebble 5%).
``Retry-After`` is honoured when polling and is passed up in ``ACMEError`` so
the manager's backoff can respect the server's rate limits.

``issue`` runs one order to the end: one challenge per authorization chosen
by the issuer's solvers (DNS-01 for wildcards and the names a dns01 solver
selects; else HTTP-01, or TLS-ALPN-01 when the Issuer asks for it), each
answer offered through a ``Solver`` and withdrawn afterwards, whatever
happens.
"""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64decode, b64encode
from josepy.jwa import ES256, ES384, ES512, HS256, RS256
from josepy.jwk import JWK, JWKEC, JWKRSA

from edgegw import __version__
from edgegw.api import certmanager as cm

log = logging.getLogger("edgegw.certificates.acme")

_BAD_NONCE = "urn:ietf:params:acme:error:badNonce"
_NONCE_RETRIES = 10
_POLL_DEADLINE = 120.0
_MAX_RESPONSE = 1 << 20


class ACMEError(Exception):
    """An order that failed; ``retry_after`` is the server's wish, in seconds, when it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Solver(Protocol):
    """Offers and withdraws one challenge answer (HTTP-01, TLS-ALPN-01 or DNS-01)."""

    async def present(self, name: str, token: str, key_authorization: str) -> None: ...

    async def cleanup(self, name: str, token: str, key_authorization: str) -> None: ...


class Key:
    """The account key as josepy wants it, and the JWS algorithm that goes with it."""

    def __init__(self, private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        if isinstance(private, rsa.RSAPrivateKey):
            self.jwk: JWK = JWKRSA(key=private)
            self.alg: Any = RS256
        else:
            self.jwk = JWKEC(key=private)
            self.alg = {256: ES256, 384: ES384, 521: ES512}[private.curve.key_size]
        self.private = private

    def thumbprint(self) -> str:
        return b64encode(self.jwk.thumbprint()).decode()


def http_client(spec: cm.ACMEIssuer) -> httpx.AsyncClient:
    """An HTTP client trusting the issuer's ``caBundle`` (or nothing, with ``skipTLSVerify``)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per ACME request
    verify: ssl.SSLContext | bool = True
    if spec.skip_tls_verify:
        verify = False
    elif spec.ca_bundle:
        verify = ssl.create_default_context(cadata=spec.ca_bundle.decode("ascii", "replace"))
    return httpx.AsyncClient(
        verify=verify,
        timeout=httpx.Timeout(30.0),
        headers={"User-Agent": f"edgegw/{__version__}"},
        follow_redirects=False,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ACMEClient:
    """One account on one ACME server."""

    def __init__(self, http: httpx.AsyncClient, directory_url: str, key: Key) -> None:
        self.http = http
        self.directory_url = directory_url
        self.key = key
        self.kid: str | None = None
        self._directory: dict[str, Any] = {}
        self._nonce: str | None = None

    # --- transport ------------------------------------------------------------------------

    async def directory(self) -> dict[str, Any]:
        if not self._directory:
            response = await self.http.get(self.directory_url)
            self._directory = self._json(response, "directory")
        return self._directory

    async def _new_nonce(self) -> str:
        response = await self.http.head((await self.directory())["newNonce"])
        nonce = response.headers.get("replay-nonce")
        if not nonce:
            raise ACMEError("the ACME server gave no nonce")
        return str(nonce)

    def _jws(self, url: str, payload: Any, nonce: str) -> bytes:
        protected: dict[str, Any] = {"alg": self.key.alg.name, "nonce": nonce, "url": url}
        if self.kid is None:
            protected["jwk"] = self.key.jwk.public_key().to_partial_json()
        else:
            protected["kid"] = self.kid
        head = b64encode(json.dumps(protected).encode())
        body = b"" if payload is None else b64encode(json.dumps(payload).encode())
        signature = self.key.alg.sign(self.key.private, head + b"." + body)
        return json.dumps(
            {"protected": head.decode(), "payload": body.decode(),
             "signature": b64encode(signature).decode()}
        ).encode()  # fmt: skip

    async def post(self, url: str, payload: Any) -> httpx.Response:
        """POST a signed ``payload`` (None: POST-as-GET); badNonce is retried.

        Raises:
            ACMEError: an error document from the server, or a transport failure.
        """
        for _ in range(_NONCE_RETRIES):
            nonce = self._nonce or await self._new_nonce()
            self._nonce = None
            response = await self.http.post(
                url,
                content=self._jws(url, payload, nonce),
                headers={"Content-Type": "application/jose+json"},
            )
            self._nonce = response.headers.get("replay-nonce")
            if response.status_code < 400:
                return response
            problem = self._problem(response)
            if problem.get("type") != _BAD_NONCE:
                detail = problem.get("detail") or response.reason_phrase
                kind = str(problem.get("type", "")).rsplit(":", 1)[-1]
                raise ACMEError(f"{kind or response.status_code}: {detail}", _retry_after(response))
        raise ACMEError("the ACME server rejected every nonce")

    def _problem(self, response: httpx.Response) -> dict[str, Any]:
        try:
            found = response.json()
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 400 or len(response.content) > _MAX_RESPONSE:
            raise ACMEError(f"{what}: HTTP {response.status_code}", _retry_after(response))
        try:
            found = response.json()
        except ValueError:
            raise ACMEError(f"{what}: not JSON") from None
        if not isinstance(found, dict):
            raise ACMEError(f"{what}: not a JSON object")
        return found

    # --- account --------------------------------------------------------------------------

    async def register(
        self, email: str | None, known_url: str = "", eab: tuple[str, bytes] | None = None
    ) -> str:
        """Find or create the account of this key; returns its URL (the ``kid``).

        Args:
            email: the contact, if any.
            known_url: the account URL kept from an earlier registration.
            eab: (key ID, HMAC key as base64url) for an external account binding.
        """
        if known_url:
            self.kid = known_url
            return known_url
        url = (await self.directory())["newAccount"]
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if email:
            payload["contact"] = [f"mailto:{email}"]
        if eab is not None:
            payload["externalAccountBinding"] = self._eab(url, *eab)
        response = await self.post(url, payload)
        url = str(response.headers.get("location", ""))
        if not url:
            raise ACMEError("newAccount answered without a Location")
        self.kid = url
        return url

    def _eab(self, url: str, key_id: str, hmac_key: bytes) -> dict[str, str]:
        """The inner JWS binding this account key to an external account (HS256)."""
        try:
            key = b64decode(hmac_key.strip())
        except ValueError:
            raise ACMEError("externalAccountBinding: the key is not base64url") from None
        protected = {"alg": "HS256", "kid": key_id, "url": url}
        head = b64encode(json.dumps(protected).encode())
        body = b64encode(json.dumps(self.key.jwk.public_key().to_partial_json()).encode())
        signature = HS256.sign(key, head + b"." + body)
        return {
            "protected": head.decode(),
            "payload": body.decode(),
            "signature": b64encode(signature).decode(),
        }

    # --- order ----------------------------------------------------------------------------

    async def issue(
        self,
        names: tuple[str, ...],
        csr_der: bytes,
        solver_for: Callable[[str], tuple[str, Solver]],
    ) -> bytes:
        """Order a certificate for ``names`` and return its PEM chain.

        Args:
            names: the DNS identifiers (a wildcard as ``*.example.com``).
            csr_der: the CSR for finalize.
            solver_for: name → (challenge type, solver) for that name's authorization.

        Raises:
            ACMEError: the order failed; the message is the server's reason.
        """
        identifiers = [{"type": "dns", "value": n} for n in names]
        response = await self.post(
            (await self.directory())["newOrder"], {"identifiers": identifiers}
        )
        order_url = response.headers.get("location", "")
        order = self._json(response, "newOrder")
        for authz_url in order.get("authorizations", ()):
            await self._authorize(str(authz_url), solver_for)
        response = await self.post(order["finalize"], {"csr": b64encode(csr_der).decode()})
        order = await self._poll(order_url, self._json(response, "finalize"), ("processing",))
        if order.get("status") != "valid" or "certificate" not in order:
            raise ACMEError(f"order ended {order.get('status')}: {_error_of(order)}")
        response = await self.post(order["certificate"], None)
        if response.status_code != 200 or b"-----BEGIN CERTIFICATE-----" not in response.content:
            raise ACMEError("certificate download failed")
        return response.content[:_MAX_RESPONSE]

    async def _authorize(self, url: str, solver_for: Callable[[str], tuple[str, Solver]]) -> None:
        authz = self._json(await self.post(url, None), "authorization")
        if authz.get("status") == "valid":
            return
        name = str(authz.get("identifier", {}).get("value", ""))
        wildcard = bool(authz.get("wildcard"))
        kind, solver = solver_for(f"*.{name}" if wildcard else name)
        challenge = next((c for c in authz.get("challenges", ()) if c.get("type") == kind), None)
        if challenge is None:
            raise ACMEError(f"{name}: the server offers no {kind} challenge")
        token = str(challenge["token"])
        key_authorization = f"{token}.{self.key.thumbprint()}"
        await solver.present(name, token, key_authorization)
        try:
            await self.post(challenge["url"], {})
            authz = await self._poll(url, authz, ("pending", "processing"))
        finally:
            with trio.CancelScope(shield=True):
                await solver.cleanup(name, token, key_authorization)
        if authz.get("status") != "valid":
            raise ACMEError(f"{name}: {kind} {authz.get('status')}: {_error_of(authz)}")

    async def _poll(
        self, url: str, current: dict[str, Any], waiting: tuple[str, ...]
    ) -> dict[str, Any]:
        """POST-as-GET ``url`` while its status is one of ``waiting``, as Retry-After says."""
        deadline = trio.current_time() + _POLL_DEADLINE
        delay = 0.5
        while current.get("status") in waiting:
            if trio.current_time() > deadline:
                raise ACMEError(f"{url} stayed {current.get('status')} for {_POLL_DEADLINE:.0f} s")
            await trio.sleep(delay)
            response = await self.post(url, None)
            current = self._json(response, "poll")
            delay = min(_retry_after(response) or delay * 1.5, 10.0)
        return current


def _error_of(resource: dict[str, Any]) -> str:
    """The first error an order or authorization carries, as the server worded it."""
    error = resource.get("error")
    for challenge in resource.get("challenges", ()):
        error = error or challenge.get("error")
    if isinstance(error, dict):
        return str(error.get("detail") or error.get("type") or "unknown error")
    return "no reason given"
