"""The ``cluster`` section of ``/api/status``: warnings and how ``edgegw status`` prints it."""

from __future__ import annotations

from edgegw.admin.client import render_table
from edgegw.cluster.shared import EtcdMemberHealth, warnings


def member(name: str, healthy: bool = True) -> EtcdMemberHealth:
    return EtcdMemberHealth(name, f"http://{name}:2379", healthy)


def test_two_voters_warn_that_a_loss_stops_failover() -> None:
    assert warnings([member("a"), member("b"), member("c")]) == []
    (warning,) = warnings([member("a"), member("b")])
    assert "2 voting members" in warning
    assert "three" in warning
    assert any("not answering: c" in w for w in warnings([member("a"), member("c", False)]))


def test_status_table_shows_who_announces_what() -> None:
    document = {
        "generation": 3,
        "errors": [],
        "resources": [],
        "cluster": {
            "node": "box1",
            "etcdReachable": True,
            "allocator": "box2",
            "addresses": [{"address": "192.0.2.100", "node": "box2"}],
            "members": [
                {"name": "box1", "healthy": True, "addresses": ["192.0.2.100"]},
                {"name": "box3", "healthy": False, "addresses": []},
            ],
            "etcd": [{"name": "e1", "endpoint": "http://e1:2379", "healthy": True, "leader": True}],
            "warnings": ["etcd has 1 voting member: ..."],
        },
    }
    lines = [line.split() for line in render_table(document).splitlines()]
    assert ["192.0.2.100", "box2"] in lines
    assert ["box1", "yes", "192.0.2.100"] in lines
    assert ["box3", "no", "<none>"] in lines
    assert ["e1", "http://e1:2379", "yes", "yes"] in lines
    assert ["WARNING:", "etcd", "has", "1", "voting", "member:", "..."] in lines
