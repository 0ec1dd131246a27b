"""ListenerSet (gateway.networking.k8s.io v1): listeners a team adds to a shared Gateway.

Field names and limits follow apis/v1/listenerset_types.go. A ListenerEntry
has exactly the fields of a Gateway Listener, so it is the same model; the
CEL rules on ``spec.listeners`` (unique names, unique port/protocol/hostname)
are in ``ListenerSetSpec.__post_init__``. Whether the Gateway takes the set
(``allowedListeners``) is the translator's business, not the decoder's.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from edgegw.api.gateway import Listener
from edgegw.api.meta import Group, Kind, Model, NamespaceName, Object, ObjectName, check_unique

ListenerEntry = Listener


class ParentGatewayReference(Model, kw_only=True, frozen=True):
    """The Gateway a ListenerSet adds its listeners to."""

    group: Group = "gateway.networking.k8s.io"
    kind: Kind = "Gateway"
    name: ObjectName
    namespace: NamespaceName | None = None


class ListenerSetSpec(Model, kw_only=True, frozen=True):
    parent_ref: ParentGatewayReference
    listeners: Annotated[tuple[ListenerEntry, ...], msgspec.Meta(min_length=1, max_length=64)]

    def __post_init__(self) -> None:
        check_unique("listeners", (ls.name for ls in self.listeners), "listener name")
        check_unique(
            "listeners",
            ((ls.port, ls.protocol, ls.hostname) for ls in self.listeners),
            "combination of port, protocol and hostname",
        )


class ListenerSet(Object, kw_only=True, frozen=True):
    spec: ListenerSetSpec
