"""``Via`` loop detection (``proto/via.py``) and the body rate floor (``proto/rate.py``)."""

from __future__ import annotations

from edgegw.proto.rate import RateFloor
from edgegw.proto.via import instance_via, passed_through


def test_each_process_name_is_its_own() -> None:
    mine, other = instance_via(), instance_via()
    assert mine.startswith(b"1.1 edgegw-")
    assert mine != other
    assert not passed_through([(b"via", other)], mine)
    assert not passed_through([], mine)


def test_a_request_that_came_back_is_spotted_among_other_hops() -> None:
    mine = instance_via()
    name = mine.split()[1]
    assert passed_through([(b"via", mine)], mine)
    assert passed_through([(b"via", b"1.0 fred, 2 " + name + b" (edge), 1.1 p.example")], mine)
    assert passed_through([(b"via", b"1.0 fred"), (b"via", b"HTTP/2 " + name)], mine)
    assert not passed_through([(b"via", b"1.1 " + name + b"x")], mine)  # a longer name
    assert not passed_through([(b"x-via", mine)], mine)


def test_rate_floor_cuts_a_trickle_after_the_grace() -> None:
    floor = RateFloor(min_rate=240, grace=5, idle=60)
    waited = 0.0
    while (limit := floor.wait_limit()) >= 1:  # one byte a second
        floor.record(1, 1)
        waited += 1
    assert 5 <= waited <= 6  # the grace, then not even one more second of credit
    assert limit < 1


def test_rate_floor_keeps_a_fast_body_going_and_caps_its_credit() -> None:
    floor = RateFloor(min_rate=240, grace=5, idle=60)
    for _ in range(100):
        floor.record(0.01, 65536)
    assert floor.wait_limit() == 60  # a long pause is allowed once, never more than idle
    floor.record(59, 1)
    assert floor.wait_limit() < 2
    floor.reset()
    assert floor.wait_limit() == 5


def test_rate_floor_zero_means_idle_timeout_only() -> None:
    floor = RateFloor(min_rate=0, grace=5, idle=60)
    floor.record(59, 1)
    assert floor.wait_limit() == 60
