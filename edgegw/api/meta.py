"""What every resource shares: the model base, metadata, constrained names and references.

Conventions of the whole ``api`` package: one msgspec base (``Model``) with
``rename="camel"``, so a Python attribute is the snake_case of the Gateway API
JSON name; optional fields are ``X | None = None``; lists are tuples defaulting
to ``()``; a CRD ``default`` is the field's default here. Simple constraints
(lengths, patterns, ranges, enums) are ``Annotated[..., Meta()]`` and
``Literal``; the CRDs' CEL rules live in ``__post_init__`` and raise
``FieldError`` naming the field they are about.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from edgegw.errors import FieldError


class Model(msgspec.Struct, rename="camel", kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every api type: a typo in a spec is an error naming the field."""


# --- scalar types with a parser -------------------------------------------------------------

_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Duration(float):
    """A Gateway API duration (``1h2m3s4ms``), held as seconds."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        if not isinstance(value, str) or not _DURATION.match(value):
            raise ValueError(f"invalid duration {value!r}: want e.g. 10s, 1m30s or 500ms")
        parts = _DURATION_PART.findall(value)
        return cls(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts))


_QUANTITY = re.compile(r"^([0-9]{1,15})([EPTGMK]i|[EPTGMk])?$")
_QUANTITY_UNITS: dict[str | None, int] = {
    **{u + "i": 1024 ** (i + 1) for i, u in enumerate("KMGTPE")},
    **{u: 1000 ** (i + 1) for i, u in enumerate("kMGTPE")},
    None: 1,
}


class Quantity(int):
    """A Kubernetes quantity of bytes (``32768``, ``256Ki``, ``20Mi``, ``1G``), held as bytes.

    Whole numbers only: a byte count has no fractions or milli suffix.
    """

    @classmethod
    def parse(cls, value: object) -> Quantity:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return cls(value)
        match = _QUANTITY.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"invalid quantity {value!r}: want e.g. 32768, 256Ki or 20Mi")
        return cls(int(match.group(1)) * _QUANTITY_UNITS[match.group(2)])


class Timestamp(float):
    """An RFC 3339 time (``metadata.creationTimestamp``), held as epoch seconds."""

    @classmethod
    def parse(cls, value: object) -> Timestamp:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return cls(moment.timestamp())
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            try:
                return cls.parse(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                pass
        raise ValueError(f"invalid timestamp {value!r}: want RFC 3339, e.g. 2024-05-01T12:00:00Z")


def dec_hook(type_: type, value: Any) -> Any:
    """msgspec hook for the scalar types above."""
    if type_ is Duration:
        return Duration.parse(value)
    if type_ is Timestamp:
        return Timestamp.parse(value)
    if type_ is Quantity:
        return Quantity.parse(value)
    raise NotImplementedError(f"cannot decode {type_!r}")


def enc_hook(value: Any) -> Any:
    """msgspec hook to encode api objects: Duration and Timestamp become plain floats."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise NotImplementedError(f"cannot encode {type(value)!r}")


# --- constrained strings (apis/v1/shared_types.go) ------------------------------------------

_DNS1123 = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
HOSTNAME_PATTERN = rf"^(\*\.)?{_DNS1123}$"
PRECISE_HOSTNAME_PATTERN = rf"^{_DNS1123}$"

Hostname = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]
PreciseHostname = Annotated[
    str, msgspec.Meta(min_length=1, max_length=253, pattern=PRECISE_HOSTNAME_PATTERN)
]
Group = Annotated[str, msgspec.Meta(max_length=253, pattern=rf"^$|^{_DNS1123}$")]
Kind = Annotated[
    str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
]
ObjectName = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
NamespaceName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
SectionName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=253, pattern=PRECISE_HOSTNAME_PATTERN)
]
GatewayController = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=253,
        pattern=rf"^{_DNS1123}\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$",
    ),
]
HeaderName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
]
_QUALIFIED_NAME = rf"^({_DNS1123}/)?([A-Za-z0-9][-A-Za-z0-9_.]{{0,61}})?[A-Za-z0-9]$"
AnnotationKey = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=_QUALIFIED_NAME)]
AnnotationValue = Annotated[str, msgspec.Meta(max_length=4096)]
LabelKey = AnnotationKey
LabelValue = Annotated[
    str, msgspec.Meta(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]
PortNumber = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Weight = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Options = Annotated[dict[AnnotationKey, AnnotationValue], msgspec.Meta(max_length=16)]


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 literal, which the spec forbids where it wants a hostname."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_hostnames(field: str, hostnames: Iterable[str]) -> None:
    """Reject IP literals: the Hostname pattern alone lets ``10.0.0.1`` through."""
    for i, host in enumerate(hostnames):
        if is_ip(host):
            raise FieldError(f"{field}[{i}]", f"{host!r} is an IP address; a hostname is required")


def check_unique(field: str, keys: Iterable[object], what: str) -> None:
    """Raise on the first repeated key, naming the element that repeats it."""
    seen: set[object] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise FieldError(f"{field}[{i}]", f"{what} must be unique, {key!r} is repeated")
        seen.add(key)


# --- metadata -------------------------------------------------------------------------------


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """Where a resource came from: filled by the loader, never read from YAML."""

    file: str = ""
    line: int = 0


class ObjectMeta(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """The part of ``metadata`` edgegw uses; uid, managedFields and the like are ignored.

    ``namespace`` is filled with ``default`` by the loader for namespaced
    kinds; ``generation`` is the store's, not the file's.
    """

    name: ObjectName
    namespace: NamespaceName | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: Timestamp | None = None
    generation: int = 0


PROXY_PROTOCOL_ANNOTATION = "edgegw.io/proxy-protocol"
PROXY_PROTOCOL_VERSIONS = ("v1", "v2")


def check_proxy_protocol_annotation(meta: ObjectMeta) -> None:
    """A backend's ``edgegw.io/proxy-protocol`` must name a version we speak.

    A typo must not quietly turn the header off: the backend would then take
    the gateway's address for the client's.
    """
    value = meta.annotations.get(PROXY_PROTOCOL_ANNOTATION)
    if value is not None and value.strip().lower() not in PROXY_PROTOCOL_VERSIONS:
        raise FieldError(
            f"metadata.annotations.{PROXY_PROTOCOL_ANNOTATION}",
            f'must be "v1" or "v2", not {value!r}',
        )


class Object(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Top level of every resource: ``status`` and other unknown keys are ignored."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    source: Source = Source()


class LabelSelectorRequirement(Model, kw_only=True, frozen=True):
    key: Annotated[str, msgspec.Meta(min_length=1)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        wants_values = self.operator in ("In", "NotIn")
        if wants_values and not self.values:
            raise FieldError("values", f"must be non-empty for operator {self.operator}")
        if not wants_values and self.values:
            raise FieldError("values", f"must be empty for operator {self.operator}")


class LabelSelector(Model, kw_only=True, frozen=True):
    """A Kubernetes label selector; an empty one selects everything."""

    match_labels: dict[str, str] = {}
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


# --- references (apis/v1/object_reference_types.go, shared_types.go) -----------------------


class ParentReference(Model, kw_only=True, frozen=True):
    group: Group = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    namespace: NamespaceName | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


def check_parent_refs(parent_refs: tuple[ParentReference, ...]) -> None:
    """Two refs to one parent must each say which part (sectionName or port), differently."""
    by_parent: dict[tuple[str, str, str | None, str], list[int]] = {}
    for i, ref in enumerate(parent_refs):
        by_parent.setdefault((ref.group, ref.kind, ref.namespace, ref.name), []).append(i)
    for indexes in by_parent.values():
        if len(indexes) < 2:
            continue
        parts = [(parent_refs[i].section_name, parent_refs[i].port) for i in indexes]
        for i, part in zip(indexes, parts, strict=True):
            if part == (None, None):
                raise FieldError(
                    f"parentRefs[{i}]",
                    "sectionName or port must be specified when parentRefs includes "
                    "2 or more references to the same parent",
                )
        check_unique("parentRefs", parts, "sectionName and port of refs to the same parent")


class LocalObjectReference(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: ObjectName


class ObjectReference(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: ObjectName
    namespace: NamespaceName | None = None


class SecretObjectReference(Model, kw_only=True, frozen=True):
    group: Group = ""
    kind: Kind = "Secret"
    name: ObjectName
    namespace: NamespaceName | None = None


class BackendObjectReference(Model, kw_only=True, frozen=True):
    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    namespace: NamespaceName | None = None
    port: PortNumber | None = None

    def __post_init__(self) -> None:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise FieldError("port", "must have port for Service reference")


class BackendRef(BackendObjectReference, kw_only=True, frozen=True):
    weight: Weight = 1


class LocalPolicyTargetReferenceWithSectionName(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: ObjectName
    section_name: SectionName | None = None
