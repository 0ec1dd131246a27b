"""`edgegw.cluster.election.decide`: who announces, claims and releases, as plain data."""

from __future__ import annotations

from edgegw.cluster.election import STAGGER, Owner, Plan, decide, rank

A, B = "192.0.2.100", "192.0.2.101"
ALL = frozenset({A, B})
NODES = ("n1", "n2", "n3")


def plan_for(
    node: str,
    lease: int = 7,
    *,
    healthy: bool = True,
    eligible: frozenset[str] = ALL,
    members: dict[str, frozenset[str]] | None = None,
    owners: dict[str, Owner] | None = None,
    unowned_for: dict[str, float] | None = None,
) -> Plan:
    return decide(
        node,
        lease,
        healthy=healthy,
        eligible=eligible,
        members={n: ALL for n in NODES} if members is None else members,
        owners=owners or {},
        unowned_for=unowned_for or {},
    )


def test_rank_is_metallbs_hash_order_and_spreads_addresses() -> None:
    assert rank(A, ["n3", "n1", "n2", "n1"]) == rank(A, NODES)
    firsts = {rank(f"192.0.2.{i}", NODES)[0] for i in range(100, 120)}
    assert firsts == set(NODES), "twenty addresses all went to one node"


def test_only_the_first_ranked_claims_a_free_address() -> None:
    claims = {n: plan_for(n).claim for n in NODES}
    for address in (A, B):
        first = rank(address, NODES)[0]
        assert [n for n in NODES if address in claims[n]] == [first]


def test_the_owner_announces_under_its_current_lease_only() -> None:
    owners = {A: Owner("n2", 7), B: Owner("n2", 6)}
    plan = plan_for("n2", 7, owners=owners)
    assert plan.announce == {A}
    assert plan.release == ((B, Owner("n2", 6)),), "an earlier incarnation's key is cleared"
    assert plan_for("n1", 9, owners=owners).announce == frozenset()


def test_unhealthy_or_leaseless_means_silence() -> None:
    owners = {A: Owner("n2", 7)}
    assert plan_for("n2", 7, healthy=False, owners=owners) == Plan()
    assert plan_for("n2", 0, owners=owners) == Plan()


def test_no_preemption_when_the_first_ranked_returns() -> None:
    first = rank(A, NODES)[0]
    other = next(n for n in NODES if n != first)
    owners = {A: Owner(other, 3)}
    assert A not in plan_for(first, owners=owners).claim
    assert A in plan_for(other, 3, owners=owners).announce


def test_an_address_no_longer_eligible_is_released() -> None:
    owners = {A: Owner("n1", 7)}
    plan = plan_for("n1", owners=owners, eligible=frozenset({B}))
    assert A not in plan.announce
    assert plan.release == ((A, Owner("n1", 7)),)


def test_ranking_counts_only_members_able_to_announce() -> None:
    order = rank(A, NODES)
    first, second = order[0], order[1]
    members = {n: ALL for n in NODES}
    members[first] = frozenset({B})  # its gateway does not hold A
    assert A in plan_for(second, members=members).claim


def test_later_ranks_claim_after_their_stagger() -> None:
    order = rank(A, NODES)
    third = order[2]
    assert A not in plan_for(third, unowned_for={A: 2 * STAGGER - 0.1}).claim
    assert A in plan_for(third, unowned_for={A: 2 * STAGGER}).claim
