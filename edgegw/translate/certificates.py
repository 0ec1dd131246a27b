"""cert-manager's resources → the certificates edgegw must keep issued: a pure plan.

Theory of operation
-------------------
``plan_certificates`` reads Issuers, ClusterIssuers, Certificates and the
Gateways' ``cert-manager.io/*`` annotations and returns, without I/O or
clock, what the certificate manager (``edgegw.certificates``) acts on:

- Certificates derived as cert-manager's gateway-shim derives them: for a
  Gateway annotated ``cert-manager.io/issuer`` or ``cluster-issuer``, every
  listener of protocol HTTPS or TLS with mode Terminate (the default), a
  hostname, and a certificateRef to a Secret in the Gateway's own namespace
  contributes its hostname to one Certificate per Secret, named after that
  Secret; a Gateway's other annotations (duration, renew-before,
  common-name, private-key-algorithm/size, issuer-kind) set its fields.
  An explicit Certificate of the same namespace and name wins over a derived
  one, as cert-manager leaves a Certificate it does not own alone.
- Each Certificate's issuer is resolved (Issuer in its namespace, or a
  ClusterIssuer), with the Secrets the issuer needs: a ``ca`` issuer's
  keypair, an ACME account key already in DIR, TSIG secrets. A ClusterIssuer
  finds its Secrets in cert-manager's cluster resource namespace,
  ``cert-manager``.
- What cannot be issued is a ``Problem`` (a condition reason and message for
  the Certificate's or Issuer's status), never an exception.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from edgegw import api
from edgegw.api import certmanager as cm

CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
DEFAULT_DURATION = 90 * 24 * 3600.0  # cert-manager's default, 2160h
_TERMINATING = ("HTTPS", "TLS")


class IssuerRef(msgspec.Struct, frozen=True, kw_only=True, order=True):
    kind: Literal["Issuer", "ClusterIssuer"]
    namespace: str  # "" for a ClusterIssuer
    name: str

    @property
    def label(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


class IssuerPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A usable issuer, with what it needs from Secrets already looked up."""

    ref: IssuerRef
    spec: cm.IssuerSpec
    challenge: Literal["http-01", "tls-alpn-01"] = "http-01"
    ca_chain_pem: bytes = b""  # ``ca`` issuers: the CA certificate
    ca_key_pem: bytes = b""  # and its key
    account_key_pem: bytes = b""  # ACME: privateKeySecretRef found in DIR (else made and kept)
    tsig_secrets: tuple[bytes, ...] = ()  # per solver, b"" when it has none
    eab_key: bytes = b""  # externalAccountBinding's HMAC key, base64url as the Secret holds it


class CertificatePlan(msgspec.Struct, frozen=True, kw_only=True):
    """One certificate to keep issued, whatever resource asked for it."""

    namespace: str
    name: str
    secret_name: str
    dns_names: tuple[str, ...]
    common_name: str | None = None
    duration: float = DEFAULT_DURATION
    renew_before: float | None = None
    renew_before_percentage: int | None = None
    key_algorithm: cm.KeyAlgorithm = "RSA"
    key_size: int | None = None
    is_ca: bool = False
    issuer: IssuerRef
    origin: str  # "Certificate", or "Gateway ns/name" for a derived one
    generation: int = 1


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["Certificate", "Issuer", "ClusterIssuer"]
    namespace: str
    name: str
    reason: str
    message: str


class CertificatesPlan(msgspec.Struct, frozen=True, kw_only=True):
    certificates: tuple[CertificatePlan, ...] = ()
    issuers: tuple[IssuerPlan, ...] = ()
    problems: tuple[Problem, ...] = ()

    def issuer(self, ref: IssuerRef) -> IssuerPlan | None:
        return next((i for i in self.issuers if i.ref == ref), None)


def plan_certificates(resources: api.Resources) -> CertificatesPlan:
    """Every Certificate to keep issued, every usable issuer, and what is wrong.

    Args:
        resources: everything loaded from the config directory.

    Returns:
        The plan, in (namespace, name) order; deterministic for the same input.
    """
    problems: list[Problem] = []
    issuers = _issuers(resources, problems)
    by_ref = {i.ref: i for i in issuers}
    wanted = _explicit(resources) + _derived(resources)
    certificates: list[CertificatePlan] = []
    taken: dict[tuple[str, str], str] = {}  # (namespace, secret) → certificate name
    seen: set[tuple[str, str]] = set()
    for cert in sorted(wanted, key=lambda c: (c.namespace, c.name, c.origin != "Certificate")):
        key = (cert.namespace, cert.name)
        if key in seen:
            continue  # an explicit Certificate wins over the one a Gateway would derive
        seen.add(key)
        problem = _certificate_problem(cert, by_ref, taken)
        if problem is not None:
            problems.append(problem)
            continue
        taken[(cert.namespace, cert.secret_name)] = cert.name
        certificates.append(cert)
    return CertificatesPlan(
        certificates=tuple(certificates), issuers=tuple(issuers), problems=tuple(problems)
    )


def _certificate_problem(
    cert: CertificatePlan, issuers: dict[IssuerRef, IssuerPlan], taken: dict[tuple[str, str], str]
) -> Problem | None:
    def problem(reason: str, message: str) -> Problem:
        return Problem(
            kind="Certificate",
            namespace=cert.namespace,
            name=cert.name,
            reason=reason,
            message=message,
        )

    owner = taken.get((cert.namespace, cert.secret_name))
    if owner is not None:
        return problem(
            "SecretConflict", f"Secret {cert.secret_name} is already issued by Certificate {owner}"
        )
    if cert.issuer not in issuers:
        return problem("IssuerNotReady", f"{cert.issuer.label} does not exist or is not ready")
    if not cert.dns_names and not cert.common_name:
        return problem("NoHostnames", "the certificate names no DNS name")
    return None


# --- issuers --------------------------------------------------------------------------------


def _issuers(resources: api.Resources, problems: list[Problem]) -> list[IssuerPlan]:
    out: list[IssuerPlan] = []
    both: list[tuple[api.Issuer | api.ClusterIssuer, IssuerRef, str]] = [
        (
            i,
            IssuerRef(kind="Issuer", namespace=i.metadata.namespace or "", name=i.metadata.name),
            i.metadata.namespace or "",
        )
        for i in resources.issuers
    ]
    both += [
        (
            i,
            IssuerRef(kind="ClusterIssuer", namespace="", name=i.metadata.name),
            CLUSTER_RESOURCE_NAMESPACE,
        )
        for i in resources.cluster_issuers
    ]
    secrets = {(s.metadata.namespace or "", s.metadata.name): s for s in resources.secrets}
    for issuer, ref, secret_ns in both:
        found = _issuer_plan(issuer, ref, secrets, secret_ns)
        if isinstance(found, IssuerPlan):
            out.append(found)
        else:
            problems.append(
                Problem(
                    kind=ref.kind,
                    namespace=ref.namespace,
                    name=ref.name,
                    reason=found[0],
                    message=found[1],
                )
            )
    return out


def _issuer_plan(
    issuer: api.Issuer | api.ClusterIssuer,
    ref: IssuerRef,
    secrets: dict[tuple[str, str], api.Secret],
    ns: str,
) -> IssuerPlan | tuple[str, str]:
    spec = issuer.spec
    challenge = issuer.metadata.annotations.get(cm.ACME_CHALLENGE_ANNOTATION, "http-01")
    plan = IssuerPlan(
        ref=ref, spec=spec, challenge="tls-alpn-01" if challenge == "tls-alpn-01" else "http-01"
    )
    if spec.ca is not None:
        secret = secrets.get((ns, spec.ca.secret_name))
        if secret is None or not {"tls.crt", "tls.key"} <= secret.data.keys():
            return (
                "ErrGetKeyPair",
                f"Secret {ns}/{spec.ca.secret_name} with tls.crt and tls.key does not exist",
            )
        return msgspec.structs.replace(
            plan, ca_chain_pem=secret.data["tls.crt"], ca_key_pem=secret.data["tls.key"]
        )
    if spec.acme is None:
        return plan
    account = spec.acme.private_key_secret_ref
    found = secrets.get((ns, account.name))
    key = found.data.get(account.key or "tls.key", b"") if found else b""
    tsig: list[bytes] = []
    for solver in spec.acme.solvers:
        ref_ = solver.dns01.rfc2136.tsig_secret_secret_ref if solver.dns01 else None
        if ref_ is None:
            tsig.append(b"")
            continue
        secret = secrets.get((ns, ref_.name))
        value = secret.data.get(ref_.key or "", b"") if secret and ref_.key else b""
        if not value:
            return ("ErrInitIssuer", f"Secret {ns}/{ref_.name} key {ref_.key} does not exist")
        tsig.append(value)
    eab = spec.acme.external_account_binding
    eab_key = b""
    if eab is not None:
        found = secrets.get((ns, eab.key_secret_ref.name))
        eab_key = found.data.get(eab.key_secret_ref.key or "", b"") if found else b""
        if not eab_key:
            where = f"{ns}/{eab.key_secret_ref.name} key {eab.key_secret_ref.key}"
            return ("ErrInitIssuer", f"externalAccountBinding: Secret {where} does not exist")
    return msgspec.structs.replace(
        plan, account_key_pem=key, tsig_secrets=tuple(tsig), eab_key=eab_key
    )


# --- certificates ---------------------------------------------------------------------------


def _explicit(resources: api.Resources) -> list[CertificatePlan]:
    out = []
    for cert in resources.certificates:
        spec = cert.spec
        ns = cert.metadata.namespace or ""
        ref = IssuerRef(
            kind=spec.issuer_ref.kind,
            namespace=ns if spec.issuer_ref.kind == "Issuer" else "",
            name=spec.issuer_ref.name,
        )
        out.append(
            CertificatePlan(
                namespace=ns,
                name=cert.metadata.name,
                secret_name=spec.secret_name,
                dns_names=tuple(n.lower() for n in spec.dns_names),
                common_name=spec.common_name,
                duration=cm.parse_go_duration(spec.duration) if spec.duration else DEFAULT_DURATION,
                renew_before=cm.parse_go_duration(spec.renew_before) if spec.renew_before else None,
                renew_before_percentage=spec.renew_before_percentage,
                key_algorithm=spec.private_key.algorithm,
                key_size=spec.private_key.size,
                is_ca=spec.is_ca,
                issuer=ref,
                origin="Certificate",
                generation=cert.metadata.generation or 1,
            )
        )
    return out


def _derived(resources: api.Resources) -> list[CertificatePlan]:
    out: list[CertificatePlan] = []
    for gateway in resources.gateways:
        ref = _annotated_issuer(gateway)
        if ref is None:
            continue
        ns = gateway.metadata.namespace or ""
        hosts: dict[str, list[str]] = {}  # secret → hostnames, in listener order
        for listener in gateway.spec.listeners:
            for secret in _listener_secrets(listener, ns):
                names = hosts.setdefault(secret, [])
                if listener.hostname and listener.hostname.lower() not in names:
                    names.append(listener.hostname.lower())
        notes = gateway.metadata.annotations
        for secret, names in hosts.items():
            out.append(_from_annotations(notes, ns, secret, tuple(names), ref, gateway))
    return out


def _listener_secrets(listener: api.gateway.Listener, ns: str) -> list[str]:
    """The same-namespace Secrets a listener names, when the shim would use it."""
    tls = listener.tls
    if listener.protocol not in _TERMINATING or tls is None or tls.mode != "Terminate":
        return []
    if not listener.hostname:
        return []
    return [
        ref.name
        for ref in tls.certificate_refs
        if ref.group in ("", "core") and ref.kind == "Secret" and ref.namespace in (None, ns)
    ]


def _annotated_issuer(gateway: api.Gateway) -> IssuerRef | None:
    notes = gateway.metadata.annotations
    if cm.ISSUER_ANNOTATION in notes:
        kind = notes.get(cm.ISSUER_KIND_ANNOTATION, "Issuer")
        ns = gateway.metadata.namespace or "" if kind == "Issuer" else ""
        return IssuerRef(
            kind="ClusterIssuer" if kind == "ClusterIssuer" else "Issuer",
            namespace=ns,
            name=notes[cm.ISSUER_ANNOTATION],
        )
    if cm.CLUSTER_ISSUER_ANNOTATION in notes:
        return IssuerRef(
            kind="ClusterIssuer", namespace="", name=notes[cm.CLUSTER_ISSUER_ANNOTATION]
        )
    return None


def _from_annotations(
    notes: dict[str, str],
    ns: str,
    secret: str,
    names: tuple[str, ...],
    ref: IssuerRef,
    gateway: api.Gateway,
) -> CertificatePlan:
    duration = notes.get(cm.DURATION_ANNOTATION)
    renew = notes.get(cm.RENEW_BEFORE_ANNOTATION)
    size = notes.get(cm.KEY_SIZE_ANNOTATION)
    algorithm = notes.get(cm.KEY_ALGORITHM_ANNOTATION, "RSA")
    return CertificatePlan(
        namespace=ns,
        name=secret,
        secret_name=secret,
        dns_names=names,
        common_name=notes.get(cm.COMMON_NAME_ANNOTATION),
        duration=cm.parse_go_duration(duration) if duration else DEFAULT_DURATION,
        renew_before=cm.parse_go_duration(renew) if renew else None,
        key_algorithm="ECDSA"
        if algorithm == "ECDSA"
        else "Ed25519"
        if algorithm == "Ed25519"
        else "RSA",
        key_size=int(size) if size else None,
        issuer=ref,
        origin=f"Gateway {ns}/{gateway.metadata.name}",
        generation=gateway.metadata.generation or 1,
    )
