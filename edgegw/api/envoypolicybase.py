"""The base of every Envoy Gateway policy model (its own module so the policy parts can split)."""

from __future__ import annotations

from edgegw.api.meta import Model


class PolicyModel(Model, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Base of every policy type: unknown fields are collected, then refused in status."""
