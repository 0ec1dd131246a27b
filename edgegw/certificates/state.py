"""One certificate's life-cycle state, and how cert-manager would show it.

``CertificateState.due`` is the decision the manager's loop takes; the
status functions render states in cert-manager's shape (conditions Ready
and Issuing, ``notBefore``, ``notAfter``, ``renewalTime``, the last failure)
for ``/api/status`` and ``status.yaml``. Nothing here holds or prints key
material: a KeyPair's PEM never enters a status.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from edgegw.certificates.store import request_digest
from edgegw.certs import KeyPair
from edgegw.translate import ResourceStatus
from edgegw.translate.certificates import CertificatePlan, Problem

GROUP_VERSION = "cert-manager.io/v1"


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def renewal_time(plan: CertificatePlan, pair: KeyPair) -> float:
    """When to renew: renewBefore or renewBeforePercentage before expiry, else at 2/3 of life."""
    life = pair.not_after - pair.not_before
    if plan.renew_before is not None and plan.renew_before < life:
        return pair.not_after - plan.renew_before
    if plan.renew_before_percentage is not None:
        return pair.not_after - life * plan.renew_before_percentage / 100
    return pair.not_before + life * 2 / 3


class CertificateState(msgspec.Struct, kw_only=True):
    """What the manager knows of one planned certificate."""

    plan: CertificatePlan
    pair: KeyPair | None = None
    request: str = ""
    issuing: bool = False
    failures: int = 0
    last_failure: str = ""
    last_failure_time: float = 0.0
    next_attempt: float = 0.0

    def due(self, now: float) -> float:
        """When this certificate next needs an order (``now`` or earlier: at once)."""
        if self.failures:
            return self.next_attempt
        if self.pair is None or self.request != request_digest(self.plan):
            return now
        return renewal_time(self.plan, self.pair)


def certificate_status(state: CertificateState, now: float) -> ResourceStatus:
    """A Certificate's status as cert-manager shows it: Ready, Issuing, times, last failure."""
    plan, pair = state.plan, state.pair
    status: dict[str, Any] = {}
    conditions = []
    current = pair is not None and state.request == request_digest(plan)
    if pair is not None and current and now < pair.not_after:
        conditions.append(
            condition("Ready", True, "Ready", "Certificate is up to date and has not expired")
        )
    elif pair is not None and now >= pair.not_after:
        conditions.append(
            condition("Ready", False, "Expired", f"Certificate expired on {iso(pair.not_after)}")
        )
    elif pair is not None:
        conditions.append(
            condition("Ready", False, "Outdated", "Issuing certificate as its spec changed")
        )
    else:
        conditions.append(
            condition(
                "Ready", False, "DoesNotExist", "Issuing certificate as Secret does not exist"
            )
        )
    if state.failures:
        conditions.append(
            condition(
                "Issuing",
                False,
                "Failed",
                "The certificate request has failed to complete and will be retried: "
                + state.last_failure,
            )
        )
        status["lastFailureTime"] = iso(state.last_failure_time)
        status["failedIssuanceAttempts"] = state.failures
        status["nextAttemptTime"] = iso(state.next_attempt)
    elif state.issuing or not current or (pair is not None and renewal_time(plan, pair) <= now):
        reason = "Renewing" if current else "DoesNotExist" if pair is None else "Outdated"
        conditions.append(condition("Issuing", True, reason, "Issuing certificate"))
    status["conditions"] = conditions
    if pair is not None:
        status["notBefore"] = iso(pair.not_before)
        status["notAfter"] = iso(pair.not_after)
        status["renewalTime"] = iso(renewal_time(plan, pair))
    status["dnsNames"] = list(plan.dns_names)
    status["issuerRef"] = {"kind": plan.issuer.kind, "name": plan.issuer.name}
    status["secretName"] = plan.secret_name
    if plan.origin != "Certificate":
        status["derivedFrom"] = plan.origin
    return resource("Certificate", plan.namespace, plan.name, status, plan.generation)


def problem_status(problem: Problem) -> ResourceStatus:
    """A Certificate or Issuer that cannot be used, Ready=False with the plan's reason."""
    cond = condition("Ready", False, problem.reason, problem.message)
    return resource(problem.kind, problem.namespace, problem.name, {"conditions": [cond]})


def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def resource(
    kind: str, namespace: str, name: str, status: dict[str, Any], generation: int = 1
) -> ResourceStatus:
    return ResourceStatus(
        api_version=GROUP_VERSION, kind=kind, name=name, namespace=namespace or None,
        generation=generation, status=status,
    )  # fmt: skip
