"""The metrics a finished request leaves, as ``/metrics`` renders them: requests are
counted per kind between scrapes, and each scrape shows every request so far."""

from __future__ import annotations

from edgegw.net.context import RequestRecord
from edgegw.observe import Observer


def record(status: int, duration: float, **kw: object) -> RequestRecord:
    fields: dict[str, object] = {
        "listener": "default/gw/http",
        "route_namespace": "default",
        "route_name": "r",
        "backend": "default/svc:80",
        "protocol": "http/1.1",
        "status": status,
        "duration": duration,
    }
    fields.update(kw)
    return RequestRecord("GET", "/", "192.0.2.1", **fields)  # type: ignore[arg-type]


def samples(observer: Observer) -> dict[str, float]:
    out = {}
    for line in observer.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_requests_are_counted_timed_and_sized_per_series() -> None:
    observer = Observer()
    observer.request_done(record(200, 0.002, bytes_out=100))
    observer.request_done(record(200, 0.3, bytes_out=50, bytes_in=7))
    observer.request_done(record(404, 20.0, protocol="h2"))
    got = samples(observer)
    labels = 'listener="default/gw/http",route="default/r"'
    assert got[f'edgegw_http_requests_total{{{labels},backend="default/svc:80",code="2xx"}}'] == 2
    assert got[f'edgegw_http_requests_total{{{labels},backend="default/svc:80",code="4xx"}}'] == 1
    by_protocol = 'edgegw_http_requests_by_protocol_total{listener="default/gw/http",protocol='
    assert got[by_protocol + '"http/1.1"}'] == 2
    assert got[by_protocol + '"h2"}'] == 1
    latency = "edgegw_http_request_duration_seconds"
    assert got[f'{latency}_bucket{{{labels},le="0.001"}}'] == 0
    assert got[f'{latency}_bucket{{{labels},le="0.0025"}}'] == 1
    assert got[f'{latency}_bucket{{{labels},le="0.5"}}'] == 2
    assert got[f'{latency}_bucket{{{labels},le="10"}}'] == 2  # 20 s is above every bound
    assert got[f'{latency}_bucket{{{labels},le="+Inf"}}'] == 3
    assert got[f"{latency}_count{{{labels}}}"] == 3
    assert abs(got[f"{latency}_sum{{{labels}}}"] - 20.302) < 1e-9
    assert got['edgegw_http_response_bytes_total{listener="default/gw/http"}'] == 150
    assert got['edgegw_http_request_bytes_total{listener="default/gw/http"}'] == 7


def test_each_scrape_shows_every_request_so_far() -> None:
    observer = Observer()
    name = (
        'edgegw_http_requests_total{listener="default/gw/http",route="default/r",'
        'backend="default/svc:80",code="2xx"}'
    )
    observer.request_done(record(200, 0.01))
    assert samples(observer)[name] == 1
    assert samples(observer)[name] == 1  # a scrape counts nothing twice
    observer.request_done(record(201, 0.01))
    observer.request_done(record(200, 0.01))
    assert samples(observer)[name] == 3
