"""SecurityPolicy ``jwt`` → ``ir.JWT``, with Envoy Gateway's validation.

Pure, like the rest of ``translate``: a local JWKS (inline, or a ConfigMap's
``jwks`` key, else its first key, as Envoy Gateway reads it) is parsed here so
a document with no usable key makes the policy ``Accepted=False`` instead of
answering 401 to everyone; a remote JWKS becomes the backend it is fetched
from: the ``backendRefs`` one, or the URI's host and port (TLS with the
system trust store for ``https``). A problem is a ``JWTProblem`` naming the
field; ``policyconvert`` turns it into the policy's condition.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr
from typing import Literal
from urllib.parse import urlsplit

from edgegw import ir
from edgegw.api import envoyjwt as ej
from edgegw.policy.jwtverify import parse_jwks
from edgegw.translate.backends import policy_backend
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.index import Index

JWKS_KEY = "jwks"  # the ConfigMap key Envoy Gateway reads first
_QUALIFIED = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class JWTProblem(ValueError):
    """A ``jwt`` field that cannot be carried out; the message names it."""


class JWTConverter:
    """Needs the Index for ConfigMaps and backendRefs."""

    def __init__(self, index: Index, tls: BackendTLSPolicies) -> None:
        self._index = index
        self._tls = tls

    def __call__(self, ns: str, spec: ej.JWT) -> ir.JWT:
        """Raises: JWTProblem."""
        names: set[str] = set()
        providers = []
        for i, provider in enumerate(spec.providers):
            field = f"spec.jwt.providers[{i}]"
            _check_provider(field, provider, names)
            providers.append(self._provider(ns, field, provider))
        return ir.JWT(
            providers=tuple(providers),
            optional=bool(spec.optional),
            fail_open=bool(spec.fail_open),
        )

    def _provider(self, ns: str, field: str, spec: ej.JWTProvider) -> ir.JWTProvider:
        local = remote = None
        if spec.local_jwks is not None:
            local = self._local(ns, f"{field}.localJWKS", spec.local_jwks)
        elif spec.remote_jwks is not None:
            remote = self._remote(ns, f"{field}.remoteJWKS", spec.remote_jwks)
        extract = spec.extract_from or ej.JWTExtractor()
        defaults = not (extract.headers or extract.params or extract.cookies)
        return ir.JWTProvider(
            name=spec.name,
            issuer=spec.issuer,
            audiences=spec.audiences,
            local_jwks=local,
            remote_jwks=remote,
            claim_to_headers=tuple((c.header.lower(), c.claim) for c in spec.claim_to_headers),
            headers=(
                (("authorization", "Bearer "),)
                if defaults
                else tuple((h.name.lower(), h.value_prefix or "") for h in extract.headers)
            ),
            params=("access_token",) if defaults else extract.params,
            cookies=extract.cookies,
            recompute_route=bool(spec.recompute_route),
        )

    def _local(self, ns: str, field: str, spec: ej.LocalJWKS) -> bytes:
        if spec.type == "Inline":
            assert spec.inline is not None
            text, where = spec.inline, f"{field}.inline"
        else:
            assert spec.value_ref is not None
            text, where = self._config_map(ns, f"{field}.valueRef", spec.value_ref.name)
        try:
            parse_jwks(text)
        except ValueError as exc:
            raise JWTProblem(f"{where}: {exc}") from None
        return text.encode()

    def _config_map(self, ns: str, field: str, name: str) -> tuple[str, str]:
        config_map = self._index.config_maps.get((ns, name))
        if config_map is None:
            raise JWTProblem(f"{field}: local JWKS ConfigMap {ns}/{name} not found")
        if JWKS_KEY in config_map.data:
            return config_map.data[JWKS_KEY], f"{field} (key {JWKS_KEY})"
        for key, value in sorted(config_map.data.items()):
            return value, f"{field} (key {key})"
        raise JWTProblem(f"{field}: ConfigMap {ns}/{name} has no data")

    def _remote(self, ns: str, field: str, spec: ej.RemoteJWKS) -> ir.RemoteJWKS:
        url = urlsplit(spec.uri)
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise JWTProblem(f"{field}.uri: {spec.uri!r} is not an http or https URI")
        if "@" in url.netloc:  # never sent, and it would show in logs and metrics
            raise JWTProblem(f"{field}.uri: user information in the URI is not supported")
        try:
            port = url.port or _DEFAULT_PORTS[url.scheme]
        except ValueError:
            raise JWTProblem(f"{field}.uri: {spec.uri!r} has an invalid port") from None
        host = url.hostname
        tls = ir.BackendTLS(hostname=host) if url.scheme == "https" else None
        backend = _uri_backend(spec.uri, host, port, tls)
        if spec.backend_refs:
            backend = self._backend_ref(ns, field, spec, tls)
        settings = spec.backend_settings
        http = settings.timeout.http if settings and settings.timeout else None
        timeout = http.request_timeout if http and http.request_timeout else None
        return ir.RemoteJWKS(
            uri=spec.uri,
            backend=backend,
            host=url.netloc,
            target=(url.path or "/") + (f"?{url.query}" if url.query else ""),
            cache_duration=float(spec.cache_duration or 300.0),
            failed_refetch=float(spec.failed_refetch_duration or 1.0),
            timeout=float(timeout or 10.0),
        )

    def _backend_ref(
        self, ns: str, field: str, spec: ej.RemoteJWKS, tls: ir.BackendTLS | None
    ) -> ir.Backend:
        found = policy_backend(self._index, self._tls, ns, spec.backend_refs, tls)
        if isinstance(found, str):
            raise JWTProblem(f"{field}.{found}")
        return found


def _uri_backend(uri: str, host: str, port: int, tls: ir.BackendTLS | None) -> ir.Backend:
    kind: Literal["ip", "fqdn"] = "ip"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        kind = "fqdn"
    endpoint = ir.Endpoint(kind=kind, address=host, port=port)
    return ir.Backend(name=f"jwks {uri}", endpoints=(endpoint,), tls=tls)


def _check_provider(field: str, spec: ej.JWTProvider, names: set[str]) -> None:
    """Envoy Gateway's ``validateJWTProvider``, and what edgegw does not do."""
    if not _QUALIFIED.match(spec.name):
        raise JWTProblem(f"{field}.name: {spec.name!r} is not a qualified name")
    if spec.name in names:
        raise JWTProblem(f"{field}.name: provider name {spec.name} must be unique")
    names.add(spec.name)
    issuer = spec.issuer
    if ":" in issuer and not urlsplit(issuer).scheme:
        raise JWTProblem(f"{field}.issuer: when issuer contains ':', it must be a valid URI")
    if ":" not in issuer and "@" in issuer and "@" not in parseaddr(issuer)[1]:
        raise JWTProblem(f"{field}.issuer: when issuer contains '@', it must be an email address")
