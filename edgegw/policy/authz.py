"""SecurityPolicy ``authorization``: the first rule whose principal matches decides.

A principal matches when the client address is in one of ``clientCIDRs`` (if
given) and every listed header carries one of its values (if given). No rule
matches: ``defaultAction``. The client address is the one client IP detection
found, as Envoy's RBAC ``remote_ip`` is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from edgegw import ir
from edgegw.policy.clientip import Address, Network, in_networks, parse_ip

HeaderLookup = Callable[[bytes], str | None]


class _Rule:
    __slots__ = ("action", "headers", "name", "networks")

    def __init__(self, rule: ir.AuthorizationRule) -> None:
        self.action = rule.action
        self.name = rule.name
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in rule.client_cidrs
        )
        self.headers = tuple((name.encode(), frozenset(values)) for name, values in rule.headers)

    def matches(self, address: Address | None, header: HeaderLookup) -> bool:
        if self.networks and (address is None or not in_networks(address, self.networks)):
            return False
        for name, values in self.headers:
            value = header(name)
            if value is None or value not in values:
                return False
        return True


class Authorizer:
    """One policy's rules, compiled once per reload."""

    __slots__ = ("_default", "_rules")

    def __init__(self, config: ir.Authorization) -> None:
        self._rules = tuple(_Rule(rule) for rule in config.rules)
        self._default = config.default_action

    def allows(self, client: str, header: HeaderLookup) -> tuple[bool, str]:
        """(allowed, the rule name that decided or "default")."""
        address = parse_ip(client)
        for rule in self._rules:
            if rule.matches(address, header):
                return rule.action == "Allow", rule.name
        return self._default == "Allow", "default"
