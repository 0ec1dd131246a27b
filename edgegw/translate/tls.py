"""Certificate references: listener keypairs, client-certificate CAs, the Gateway's client cert.

Each resolver returns what it could use plus the first problem it met, as a
``RefProblem`` carrying the spec's reason; the caller decides which condition
that problem lands on (a listener's ResolvedRefs, the Gateway's ResolvedRefs…).
Cross-namespace references are checked against ReferenceGrants before the
target is looked up, so a missing grant never reveals whether a Secret exists.
"""

from __future__ import annotations

from typing import NamedTuple

from edgegw import api, ir
from edgegw.api.meta import Object, ObjectReference, SecretObjectReference
from edgegw.certs import CertificateError, KeyPair, load_ca_bundle, load_key_pair, validity_problem
from edgegw.translate.index import GATEWAY_GROUP, Index

TLS_SECRET = "kubernetes.io/tls"
CA_KEY = "ca.crt"


class RefProblem(NamedTuple):
    reason: str
    message: str


def _gateway_may_see(index: Index, gateway: Object, kind: str, ns: str, name: str) -> bool:
    """ReferenceGrants name the referring kind: a Gateway's grant does not cover a ListenerSet."""
    source = (GATEWAY_GROUP, gateway.kind, gateway.metadata.namespace or "")
    return index.ref_allowed(source, ("", kind, ns, name))


def load_tls_secret(
    index: Index, gateway: Object, ref: SecretObjectReference, now: float | None, invalid: str
) -> KeyPair | RefProblem:
    """Resolve one Secret reference to a usable keypair, or say why not.

    ``gateway`` is the referring object: a Gateway, or the ListenerSet whose
    listener names the Secret.

    ``invalid`` is the reason for a reference that is allowed but unusable
    (``InvalidCertificateRef`` for listeners, ``InvalidClientCertificateRef``
    for the Gateway's backend client certificate).
    """
    ns = ref.namespace or gateway.metadata.namespace or ""
    where = f"{ns}/{ref.name}"
    if ref.group != "" or ref.kind != "Secret":
        return RefProblem(invalid, f"unsupported reference to {ref.group}/{ref.kind} {where}")
    if not _gateway_may_see(index, gateway, "Secret", ns, ref.name):
        return RefProblem("RefNotPermitted", f"Secret {where} not permitted by any ReferenceGrant")
    secret = index.secrets.get((ns, ref.name))
    if secret is None:
        return RefProblem(invalid, f"Secret {where} does not exist")
    if secret.type != TLS_SECRET:
        return RefProblem(invalid, f"Secret {where} must be of type {TLS_SECRET}")
    try:
        pair = load_key_pair(secret.data.get("tls.crt", b""), secret.data.get("tls.key", b""))
    except CertificateError as exc:
        return RefProblem(invalid, f"Secret {where}: {exc}")
    problem = validity_problem(pair, now) if now is not None else None
    if problem:
        return RefProblem(invalid, f"Secret {where}: {problem}")
    return pair


def listener_certificates(
    index: Index, gateway: Object, tls: api.gateway.ListenerTLSConfig, now: float | None
) -> tuple[tuple[ir.Certificate, ...], RefProblem | None]:
    """The listener's usable certificates and the first problem among its certificateRefs."""
    certs: list[ir.Certificate] = []
    first: RefProblem | None = None
    for ref in tls.certificate_refs:
        found = load_tls_secret(index, gateway, ref, now, "InvalidCertificateRef")
        if isinstance(found, RefProblem):
            first = first or found
            continue
        ns = ref.namespace or gateway.metadata.namespace or ""
        certs.append(
            ir.Certificate(
                chain_pem=found.chain_pem,
                key_pem=found.key_pem,
                names=found.names,
                source=f"{ns}/{ref.name}",
            )
        )
    return tuple(certs), first


def load_ca(index: Index, ref: ObjectReference, ns: str, allowed: bool) -> bytes | tuple[str, str]:
    """A CA bundle from a ConfigMap or Secret key ``ca.crt``.

    Returns the PEM, or ``(problem, message)`` where problem is "kind",
    "grant" or "ref" so each caller can map it to its own reason names.
    """
    where = f"{ns}/{ref.name}"
    if ref.group != "" or ref.kind not in ("ConfigMap", "Secret"):
        return ("kind", f"unsupported CA certificate reference to {ref.group}/{ref.kind} {where}")
    if not allowed:
        return ("grant", f"{ref.kind} {where} not permitted by any ReferenceGrant")
    if ref.kind == "ConfigMap":
        cm = index.config_maps.get((ns, ref.name))
        data = (
            None if cm is None else cm.data.get(CA_KEY, "").encode() or cm.binary_data.get(CA_KEY)
        )
    else:
        secret = index.secrets.get((ns, ref.name))
        data = None if secret is None else secret.data.get(CA_KEY)
    if data is None:
        return ("ref", f"{ref.kind} {where} does not exist or has no {CA_KEY}")
    try:
        return load_ca_bundle(data, f"{ref.kind} {where} {CA_KEY}")
    except CertificateError as exc:
        return ("ref", str(exc))


_FRONTEND_REASONS = {
    "kind": "InvalidCACertificateKind",
    "grant": "RefNotPermitted",
    "ref": "InvalidCACertificateRef",
}


def frontend_validation(
    index: Index, gateway: api.Gateway, port: int
) -> tuple[ir.FrontendValidation | None, RefProblem | None]:
    """Client-certificate validation for an HTTPS listener on ``port``.

    The per-port setting wins over the default. Returns no validation and no
    problem when the Gateway asks for none; no validation and a problem when
    none of its CA references could be used.
    """
    frontend = gateway.spec.tls.frontend if gateway.spec.tls else None
    if frontend is None:
        return None, None
    config = next((p.tls for p in frontend.per_port if p.port == port), frontend.default)
    if config.validation is None:
        return None, None
    bundles: list[bytes] = []
    first: RefProblem | None = None
    for ref in config.validation.ca_certificate_refs:
        ns = ref.namespace or gateway.metadata.namespace or ""
        allowed = _gateway_may_see(index, gateway, ref.kind, ns, ref.name)
        found = load_ca(index, ref, ns, allowed)
        if isinstance(found, bytes):
            bundles.append(found)
        elif first is None:
            first = RefProblem(_FRONTEND_REASONS[found[0]], found[1])
    if not bundles:
        return None, first
    mode = config.validation.mode
    return ir.FrontendValidation(ca_pem=b"".join(bundles), mode=mode), first


def client_certificate(
    index: Index, gateway: api.Gateway, now: float | None
) -> KeyPair | RefProblem | None:
    """The Gateway's ``spec.tls.backend.clientCertificateRef``, for TLS to backends."""
    backend = gateway.spec.tls.backend if gateway.spec.tls else None
    if backend is None or backend.client_certificate_ref is None:
        return None
    ref = backend.client_certificate_ref
    return load_tls_secret(index, gateway, ref, now, "InvalidClientCertificateRef")
