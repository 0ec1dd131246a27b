"""Which addresses each of our Gateways binds: the bridge from resources to ``pools``.

``pools.allocate`` works on plain values so it can be tested without any
YAML; this module feeds it the IPAddressPools and our Gateways, and hands the
translator one ``PoolAssignment`` per Gateway whose addresses a pool decides.
A Gateway no pool applies to (no pools at all, or none with ``autoAssign``
and no ``metallb.io/address-pool`` annotation) gets no entry, so it binds
``--default-address`` as CONTRACT.md says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from edgegw import pools
from edgegw.api import Resources
from edgegw.pools import PoolAssignment

log = logging.getLogger("edgegw.addresses")

GatewayKey = tuple[str, str]


def _pools(resources: Resources) -> list[pools.Pool]:
    parsed = []
    for pool in resources.ip_address_pools:
        try:
            parsed.append(
                pools.Pool.from_spec(
                    pool.metadata.name,
                    pool.spec.addresses,
                    auto_assign=pool.spec.auto_assign,
                    avoid_buggy_ips=pool.spec.avoid_buggy_ips,
                    labels=pool.metadata.labels,
                )
            )
        except ValueError as exc:  # validated at load; kept as a guard
            log.error("IPAddressPool %s: %s", pool.metadata.name, exc)
    return parsed


def _ours(resources: Resources, controller_name: str) -> set[str]:
    return {
        gc.metadata.name
        for gc in resources.gateway_classes
        if gc.spec.controller_name == controller_name
    }


def assign(
    resources: Resources,
    previous: Mapping[GatewayKey, Sequence[str]],
    controller_name: str = "edgegw.io/gateway-controller",
) -> dict[GatewayKey, PoolAssignment]:
    """Pool-decided addresses of our Gateways, keyed by (namespace, name)."""
    parsed = _pools(resources)
    if not parsed:
        return {}
    classes = _ours(resources, controller_name)
    requests: dict[GatewayKey, pools.GatewayRequest] = {}
    for gw in resources.gateways:
        if gw.spec.gateway_class_name not in classes:
            continue
        wanted = tuple(
            a.value for a in gw.spec.addresses if a.type in (None, "IPAddress") and a.value
        )
        requests[(gw.metadata.namespace or "default", gw.metadata.name)] = pools.GatewayRequest(
            annotations=dict(gw.metadata.annotations), addresses=wanted
        )
    decided = pools.allocate(parsed, requests, previous)
    auto = any(p.auto_assign for p in parsed)
    result: dict[GatewayKey, PoolAssignment] = {}
    for key, got in decided.items():
        request = requests[key]
        if not request.addresses and not auto and pools.POOL_ANNOTATION not in request.annotations:
            continue  # no pool applies: --default-address
        result[key] = got
    return result
