"""ReferenceGrant and BackendTLSPolicy: the two kinds that permit or qualify references."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import (
    Group,
    Hostname,
    Kind,
    LocalObjectReference,
    LocalPolicyTargetReferenceWithSectionName,
    Model,
    NamespaceName,
    Object,
    ObjectName,
    Options,
    PreciseHostname,
)
from edgegw.errors import FieldError

# --- ReferenceGrant -------------------------------------------------------------------------


class ReferenceGrantFrom(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    namespace: NamespaceName


class ReferenceGrantTo(Model, kw_only=True, frozen=True):
    group: Group
    kind: Kind
    name: ObjectName | None = None


class ReferenceGrantSpec(Model, kw_only=True, frozen=True):
    from_: Annotated[tuple[ReferenceGrantFrom, ...], msgspec.Meta(min_length=1, max_length=16)] = (
        msgspec.field(name="from")
    )
    to: Annotated[tuple[ReferenceGrantTo, ...], msgspec.Meta(min_length=1, max_length=16)]


class ReferenceGrant(Object, kw_only=True, frozen=True):
    spec: ReferenceGrantSpec


# --- BackendTLSPolicy -----------------------------------------------------------------------

AbsoluteURI = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=253,
        pattern=r"^(([^:/?#]+):)(//([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?",
    ),
]
WellKnownCACertificates = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=253,
        pattern=r"^(System|([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
        r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]))$",
    ),
]


class SubjectAltName(Model, kw_only=True, frozen=True):
    type: Literal["Hostname", "URI"]
    hostname: Hostname | None = None
    uri: AbsoluteURI | None = None

    def __post_init__(self) -> None:
        if (self.type == "Hostname") != bool(self.hostname):
            raise FieldError("hostname", "hostname must be set exactly when type is Hostname")
        if (self.type == "URI") != bool(self.uri):
            raise FieldError("uri", "uri must be set exactly when type is URI")


class BackendTLSPolicyValidation(Model, kw_only=True, frozen=True):
    ca_certificate_refs: Annotated[
        tuple[LocalObjectReference, ...], msgspec.Meta(max_length=8)
    ] = ()
    well_known_ca_certificates: WellKnownCACertificates | None = msgspec.field(
        default=None, name="wellKnownCACertificates"
    )
    hostname: PreciseHostname
    subject_alt_names: Annotated[tuple[SubjectAltName, ...], msgspec.Meta(max_length=5)] = ()

    def __post_init__(self) -> None:
        if self.ca_certificate_refs and self.well_known_ca_certificates:
            raise FieldError(
                "wellKnownCACertificates",
                "must not contain both caCertificateRefs and wellKnownCACertificates",
            )
        if not self.ca_certificate_refs and not self.well_known_ca_certificates:
            raise FieldError(
                "caCertificateRefs",
                "must specify either caCertificateRefs or wellKnownCACertificates",
            )


class BackendTLSPolicySpec(Model, kw_only=True, frozen=True):
    target_refs: Annotated[
        tuple[LocalPolicyTargetReferenceWithSectionName, ...],
        msgspec.Meta(min_length=1, max_length=16),
    ]
    validation: BackendTLSPolicyValidation
    options: Options = {}

    def __post_init__(self) -> None:
        seen: dict[tuple[str, str, str], list[str | None]] = {}
        for i, ref in enumerate(self.target_refs):
            sections = seen.setdefault((ref.group, ref.kind, ref.name), [])
            if sections and (ref.section_name is None or None in sections):
                raise FieldError(
                    f"targetRefs[{i}].sectionName",
                    "sectionName must be specified when targetRefs includes 2 or more "
                    "references to the same target",
                )
            if ref.section_name in sections:
                raise FieldError(f"targetRefs[{i}].sectionName", "sectionName must be unique")
            sections.append(ref.section_name)


class BackendTLSPolicy(Object, kw_only=True, frozen=True):
    spec: BackendTLSPolicySpec
