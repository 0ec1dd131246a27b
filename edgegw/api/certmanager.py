"""cert-manager.io/v1 kinds: Issuer, ClusterIssuer, Certificate, and the Gateway annotations.

edgegw reads cert-manager's own YAML so that a config written for a cluster
works here unchanged; the fields it does not act on are still decoded (and
so checked), and an issuer type or solver it cannot run is an error naming
the field rather than a certificate that silently never comes. Durations are
Go's ``time.ParseDuration`` syntax (``2160h``, ``1h30m``), as cert-manager
reads them.

The Gateway annotations (``cert-manager.io/issuer`` and friends) are checked
when the Gateway is decoded (``check_gateway_annotations``), so a typo in a
duration is reported at the Gateway's file and line like any other field.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import Model, Object, ObjectMeta, ObjectName, ParentReference
from edgegw.errors import FieldError

GROUP = "cert-manager.io"
ISSUER_ANNOTATION = f"{GROUP}/issuer"
CLUSTER_ISSUER_ANNOTATION = f"{GROUP}/cluster-issuer"
ISSUER_KIND_ANNOTATION = f"{GROUP}/issuer-kind"
ISSUER_GROUP_ANNOTATION = f"{GROUP}/issuer-group"
COMMON_NAME_ANNOTATION = f"{GROUP}/common-name"
DURATION_ANNOTATION = f"{GROUP}/duration"
RENEW_BEFORE_ANNOTATION = f"{GROUP}/renew-before"
KEY_ALGORITHM_ANNOTATION = f"{GROUP}/private-key-algorithm"
KEY_SIZE_ANNOTATION = f"{GROUP}/private-key-size"
ACME_CHALLENGE_ANNOTATION = "edgegw.io/acme-challenge"

_GO_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
GoDuration = Annotated[str, msgspec.Meta(pattern=_GO_DURATION.pattern, max_length=64)]
KeyAlgorithm = Literal["RSA", "ECDSA", "Ed25519"]
_DNSName = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration (``2160h``, ``1h30m``, ``90s``).

    Raises:
        ValueError: not a Go duration.
    """
    if not _GO_DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: want e.g. 2160h, 1h30m or 90s")
    return sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(text))


class SecretKeySelector(Model, kw_only=True, frozen=True):
    name: ObjectName
    key: str | None = None


# --- issuers --------------------------------------------------------------------------------


class SelfSignedIssuer(Model, kw_only=True, frozen=True):
    crl_distribution_points: tuple[str, ...] = ()


class CAIssuer(Model, kw_only=True, frozen=True):
    secret_name: ObjectName
    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()
    issuing_certificate_urls: tuple[str, ...] = ()


class GatewayHTTPRoute(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Where cert-manager would attach its solver route; edgegw answers on port 80 itself."""

    parent_refs: tuple[ParentReference, ...] = ()
    labels: dict[str, str] = {}
    service_type: str | None = None


class HTTP01Solver(Model, kw_only=True, frozen=True):
    gateway_http_route: GatewayHTTPRoute | None = msgspec.field(
        default=None, name="gatewayHTTPRoute"
    )
    ingress: dict[str, object] | None = None


class RFC2136Solver(Model, kw_only=True, frozen=True):
    nameserver: Annotated[str, msgspec.Meta(min_length=1)]
    tsig_key_name: str | None = None
    tsig_algorithm: str = "HMACMD5"
    tsig_secret_secret_ref: SecretKeySelector | None = None
    protocol: Literal["TCP", "UDP", ""] = ""

    def __post_init__(self) -> None:
        if self.tsig_key_name and self.tsig_secret_secret_ref is None:
            raise FieldError("tsigSecretSecretRef", "required with tsigKeyName")


class DNS01Solver(Model, kw_only=True, frozen=True):
    """Only ``rfc2136`` is run by edgegw; another provider is an unknown field."""

    rfc2136: RFC2136Solver
    cname_strategy: Literal["None", "Follow"] | None = None


class SolverSelector(Model, kw_only=True, frozen=True):
    dns_names: tuple[_DNSName, ...] = ()
    dns_zones: tuple[_DNSName, ...] = ()
    match_labels: dict[str, str] = {}


class ACMESolver(Model, kw_only=True, frozen=True):
    selector: SolverSelector | None = None
    http01: HTTP01Solver | None = None
    dns01: DNS01Solver | None = None

    def __post_init__(self) -> None:
        if (self.http01 is None) == (self.dns01 is None):
            raise FieldError("", "a solver needs exactly one of http01 and dns01")


class ExternalAccountBinding(Model, kw_only=True, frozen=True):
    """RFC 8555 §7.3.4; the Secret holds the CA's HMAC key, base64url, signed with HS256."""

    key_id: Annotated[str, msgspec.Meta(min_length=1)] = msgspec.field(name="keyID")
    key_secret_ref: SecretKeySelector
    key_algorithm: Literal["HS256"] | None = None  # deprecated in cert-manager; HS256 only


class ACMEIssuer(Model, kw_only=True, frozen=True):
    server: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    email: str | None = None
    private_key_secret_ref: SecretKeySelector
    ca_bundle: bytes | None = None
    skip_tls_verify: bool = msgspec.field(default=False, name="skipTLSVerify")
    solvers: Annotated[tuple[ACMESolver, ...], msgspec.Meta(max_length=32)] = ()
    external_account_binding: ExternalAccountBinding | None = None
    preferred_chain: str | None = None
    disable_account_key_generation: bool = False
    enable_duration_feature: bool = False
    profile: str | None = None


class IssuerSpec(Model, kw_only=True, frozen=True):
    acme: ACMEIssuer | None = None
    self_signed: SelfSignedIssuer | None = None
    ca: CAIssuer | None = None

    def __post_init__(self) -> None:
        chosen = [n for n in ("acme", "selfSigned", "ca") if getattr(self, _attr(n)) is not None]
        if len(chosen) != 1:
            raise FieldError("", "exactly one of acme, selfSigned and ca is required")


def _attr(name: str) -> str:
    return "self_signed" if name == "selfSigned" else name


def _check_challenge_annotation(meta: ObjectMeta) -> None:
    value = meta.annotations.get(ACME_CHALLENGE_ANNOTATION)
    if value is not None and value not in ("http-01", "tls-alpn-01"):
        raise FieldError(
            f"metadata.annotations.{ACME_CHALLENGE_ANNOTATION}",
            f'must be "http-01" or "tls-alpn-01", not {value!r}',
        )


class Issuer(Object, kw_only=True, frozen=True):
    spec: IssuerSpec

    def __post_init__(self) -> None:
        _check_challenge_annotation(self.metadata)


class ClusterIssuer(Object, kw_only=True, frozen=True):
    spec: IssuerSpec

    def __post_init__(self) -> None:
        _check_challenge_annotation(self.metadata)


# --- certificates ---------------------------------------------------------------------------


class IssuerReference(Model, kw_only=True, frozen=True):
    name: ObjectName
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    group: Literal["cert-manager.io"] = "cert-manager.io"


class CertificatePrivateKey(Model, kw_only=True, frozen=True):
    algorithm: KeyAlgorithm = "RSA"
    size: int | None = None
    encoding: Literal["PKCS1", "PKCS8"] = "PKCS1"
    rotation_policy: Literal["Never", "Always"] = "Always"

    def __post_init__(self) -> None:
        allowed = {"RSA": (None, 2048, 3072, 4096), "ECDSA": (None, 256, 384, 521)}
        if self.size not in allowed.get(self.algorithm, (None,)):
            raise FieldError("size", f"{self.size} is not a valid size for {self.algorithm}")


class CertificateSpec(Model, kw_only=True, frozen=True):
    secret_name: ObjectName
    issuer_ref: IssuerReference
    dns_names: Annotated[tuple[_DNSName, ...], msgspec.Meta(max_length=100)] = ()
    common_name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    ip_addresses: tuple[str, ...] = ()
    duration: GoDuration | None = None
    renew_before: GoDuration | None = None
    renew_before_percentage: Annotated[int, msgspec.Meta(ge=1, le=99)] | None = None
    private_key: CertificatePrivateKey = CertificatePrivateKey()
    is_ca: bool = msgspec.field(default=False, name="isCA")
    usages: tuple[str, ...] = ()
    subject: dict[str, object] | None = None
    secret_template: dict[str, object] | None = None
    revision_history_limit: int | None = None

    def __post_init__(self) -> None:
        if not self.dns_names and not self.common_name and not self.ip_addresses:
            raise FieldError("dnsNames", "at least one of dnsNames, commonName or ipAddresses")
        if self.duration is not None and parse_go_duration(self.duration) < 3600:
            raise FieldError("duration", "must be at least 1h (cert-manager's minimum)")


class Certificate(Object, kw_only=True, frozen=True):
    spec: CertificateSpec


# --- the Gateway annotations ----------------------------------------------------------------


def check_gateway_annotations(meta: ObjectMeta) -> None:
    """The cert-manager annotations of a Gateway must make sense, as the shim checks them.

    Raises:
        FieldError: naming ``metadata.annotations.<key>``.
    """
    notes = meta.annotations

    def bad(key: str, message: str) -> FieldError:
        return FieldError(f"metadata.annotations.{key}", message)

    if ISSUER_ANNOTATION in notes and CLUSTER_ISSUER_ANNOTATION in notes:
        raise bad(CLUSTER_ISSUER_ANNOTATION, f"cannot be set together with {ISSUER_ANNOTATION}")
    for key in (DURATION_ANNOTATION, RENEW_BEFORE_ANNOTATION):
        if key in notes:
            try:
                parse_go_duration(notes[key])
            except ValueError as exc:
                raise bad(key, str(exc)) from None
    algorithm = notes.get(KEY_ALGORITHM_ANNOTATION)
    if algorithm is not None and algorithm not in ("RSA", "ECDSA", "Ed25519"):
        raise bad(KEY_ALGORITHM_ANNOTATION, f'must be RSA, ECDSA or Ed25519, not "{algorithm}"')
    size = notes.get(KEY_SIZE_ANNOTATION)
    if size is not None and not size.isdigit():
        raise bad(KEY_SIZE_ANNOTATION, f'must be a number, not "{size}"')
    kind = notes.get(ISSUER_KIND_ANNOTATION)
    if kind is not None and kind not in ("Issuer", "ClusterIssuer"):
        raise bad(ISSUER_KIND_ANNOTATION, f'must be Issuer or ClusterIssuer, not "{kind}"')
    group = notes.get(ISSUER_GROUP_ANNOTATION)
    if group is not None and group != GROUP:
        raise bad(ISSUER_GROUP_ANNOTATION, f"only {GROUP} issuers are run by edgegw")
    common = notes.get(COMMON_NAME_ANNOTATION)
    if common is not None and len(common) > 64:
        raise bad(COMMON_NAME_ANNOTATION, "must be at most 64 characters")
