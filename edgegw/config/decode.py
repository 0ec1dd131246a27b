"""Documents → typed resources: the kind table, version checks and error locations.

``KINDS`` maps ``(apiGroup, kind)`` to the versions edgegw serves and the
model each decodes into; one model serves all versions of a kind, and the few
limits that differ by version are in ``_VERSION_RULES``. A failure becomes a
``ConfigError`` whose field is msgspec's ``$.spec…`` path (plus the
``FieldError`` field of a failed cross-field rule) and whose line comes from
the document's node index.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from edgegw import api
from edgegw.api.certmanager import check_gateway_annotations
from edgegw.api.envoypolicies import EnvoyPolicy, unimplemented_fields
from edgegw.api.meta import Object, Source, dec_hook
from edgegw.config.parse import Document, Path
from edgegw.errors import ConfigError, FieldError, UnknownKind

_GATEWAY = "gateway.networking.k8s.io"
KINDS: dict[tuple[str, str], dict[str, type[Object]]] = {
    (_GATEWAY, "GatewayClass"): dict.fromkeys(("v1", "v1beta1"), api.GatewayClass),
    (_GATEWAY, "Gateway"): dict.fromkeys(("v1", "v1beta1"), api.Gateway),
    (_GATEWAY, "ListenerSet"): {"v1": api.ListenerSet},
    (_GATEWAY, "HTTPRoute"): dict.fromkeys(("v1", "v1beta1"), api.HTTPRoute),
    (_GATEWAY, "GRPCRoute"): dict.fromkeys(("v1", "v1alpha2"), api.GRPCRoute),
    (_GATEWAY, "TLSRoute"): dict.fromkeys(("v1", "v1alpha2", "v1alpha3"), api.TLSRoute),
    (_GATEWAY, "TCPRoute"): dict.fromkeys(("v1", "v1alpha2"), api.TCPRoute),
    (_GATEWAY, "UDPRoute"): dict.fromkeys(("v1", "v1alpha2"), api.UDPRoute),
    (_GATEWAY, "ReferenceGrant"): dict.fromkeys(("v1", "v1beta1", "v1alpha2"), api.ReferenceGrant),
    (_GATEWAY, "BackendTLSPolicy"): dict.fromkeys(("v1", "v1alpha3"), api.BackendTLSPolicy),
    ("", "Service"): {"v1": api.Service},
    ("", "Secret"): {"v1": api.Secret},
    ("", "ConfigMap"): {"v1": api.ConfigMap},
    ("", "Namespace"): {"v1": api.Namespace},
    ("discovery.k8s.io", "EndpointSlice"): {"v1": api.EndpointSlice},
    ("gateway.envoyproxy.io", "Backend"): {"v1alpha1": api.Backend},
    ("gateway.envoyproxy.io", "ClientTrafficPolicy"): {"v1alpha1": api.ClientTrafficPolicy},
    ("gateway.envoyproxy.io", "BackendTrafficPolicy"): {"v1alpha1": api.BackendTrafficPolicy},
    ("gateway.envoyproxy.io", "SecurityPolicy"): {"v1alpha1": api.SecurityPolicy},
    ("metallb.io", "IPAddressPool"): {"v1beta1": api.IPAddressPool},
    ("metallb.io", "L2Advertisement"): {"v1beta1": api.L2Advertisement},
    ("cert-manager.io", "Issuer"): {"v1": api.Issuer},
    ("cert-manager.io", "ClusterIssuer"): {"v1": api.ClusterIssuer},
    ("cert-manager.io", "Certificate"): {"v1": api.Certificate},
}
CLUSTER_SCOPED: frozenset[type[Object]] = frozenset(
    {api.GatewayClass, api.Namespace, api.ClusterIssuer}
)


def _one_rule(obj: Object) -> FieldError | None:
    rules = getattr(getattr(obj, "spec", None), "rules", ())
    if len(rules) > 1:
        return FieldError("spec.rules", "at most 1 rule in this version (use v1alpha2 for more)")
    return None


def _tls_hostnames_required(obj: Object) -> FieldError | None:
    if isinstance(obj, api.TLSRoute) and not obj.spec.hostnames:
        return FieldError("spec.hostnames", "at least one hostname is required in v1")
    return None


_VERSION_RULES: dict[
    tuple[type[Object], str], tuple[Callable[[Object], FieldError | None], ...]
] = {
    (api.TLSRoute, "v1"): (_one_rule, _tls_hostnames_required),
    (api.TCPRoute, "v1"): (_one_rule,),
    (api.UDPRoute, "v1"): (_one_rule,),
}


def decode(doc: Document) -> Object:
    """Turn one document into its typed resource, with namespace and source filled in.

    Args:
        doc: a parsed document.

    Returns:
        The resource; cluster-scoped kinds have namespace None, others "default" when unset.

    Raises:
        UnknownKind: the kind or version is not one edgegw reads (a warning for the caller).
        ConfigError: the document is not a valid resource of its kind.
    """
    model, version = _model_for(doc)
    raw = {k: v for k, v in doc.raw.items() if k != "source"}
    try:
        obj = msgspec.convert(raw, model, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise _located(doc, exc) from None
    for rule in _VERSION_RULES.get((model, version), ()):
        problem = rule(obj)
        if problem is not None:
            path = _tokens(problem.field)
            raise ConfigError(doc.file, doc.line_of(path), problem.field, problem.message)
    if model is api.Gateway:
        try:
            check_gateway_annotations(obj.metadata)
        except FieldError as problem:
            raise _annotation_error(doc, problem) from None
    if isinstance(obj, EnvoyPolicy):
        spec_type = msgspec.structs.fields(model)
        spec_model = next(f.type for f in spec_type if f.name == "spec")
        missing = unimplemented_fields(raw.get("spec"), spec_model)
        spec = raw.get("spec")
        obj = msgspec.structs.replace(
            obj, unimplemented=tuple(missing), raw_spec=spec if isinstance(spec, dict) else {}
        )
    namespace = None if model in CLUSTER_SCOPED else obj.metadata.namespace or "default"
    metadata = msgspec.structs.replace(obj.metadata, namespace=namespace)
    return msgspec.structs.replace(
        obj, metadata=metadata, source=Source(file=doc.file, line=doc.line)
    )


def _annotation_error(doc: Document, problem: FieldError) -> ConfigError:
    """``metadata.annotations.cert-manager.io/duration``: the key holds dots, so no _tokens."""
    key = problem.field.removeprefix("metadata.annotations.")
    line = doc.line_of(("metadata", "annotations", key))
    return ConfigError(doc.file, line, problem.field, problem.message)


def _model_for(doc: Document) -> tuple[type[Object], str]:
    raw = doc.raw
    if not isinstance(raw, dict):
        raise ConfigError(doc.file, doc.line, "", "a resource must be a mapping")
    for key in ("apiVersion", "kind"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(doc.file, doc.line_of([key]), key, "required field is missing")
    api_version, kind = raw["apiVersion"], raw["kind"]
    group, _, version = api_version.rpartition("/")
    versions = KINDS.get((group, kind))
    if versions is None:
        message = f"kind {kind} of {api_version} is not read by edgegw; ignored"
        raise UnknownKind(doc.file, doc.line, "kind", message)
    if version not in versions:
        served = ", ".join(f"{group}/{v}" if group else v for v in versions)
        message = f"{kind} is not served in {api_version} (use {served}); ignored"
        raise UnknownKind(doc.file, doc.line, "apiVersion", message)
    return versions[version], version


_MESSAGE_AND_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _located(doc: Document, exc: msgspec.ValidationError) -> ConfigError:
    """A msgspec error as file, line, field and message."""
    match = _MESSAGE_AND_PATH.match(str(exc))
    message = match["message"] if match else str(exc)
    path = list(_tokens(match["path"] or "")) if match else []
    cause = exc.__cause__
    if isinstance(cause, FieldError):
        path.extend(_tokens(cause.field))
        message = cause.message
    elif unknown := _UNKNOWN.match(message):
        path.append(unknown["name"])
        message = f"unknown field `{unknown['name']}`"
    elif missing := _MISSING.match(message):
        path.append(missing["name"])
        message = "required field is missing"
    return ConfigError(doc.file, doc.line_of(path), format_field(path), message)


def _tokens(text: str) -> Path:
    """``.spec.rules[0]`` (or ``spec.rules[0]``) → ``("spec", "rules", 0)``."""
    if text and not text.startswith((".", "[")):
        text = "." + text
    return tuple(
        name if name else int(index) for name, index in _TOKEN.findall(text) if name or index
    )


def format_field(path: Path | list[str | int]) -> str:
    """``("spec", "rules", 0, "name")`` → ``spec.rules[0].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
