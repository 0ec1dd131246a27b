"""HTTP/1.1 benchmark: edgegw against nginx, both proxying to the same fast upstream.

Run through `bench/http1` (see bench/README.md). Everything listens on 127.0.0.1, every load
run is bounded by --duration, every process started here is stopped on the way out, and a
step that fails prints its error and leaves the other steps to run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lib import (
    ROOT,
    BenchError,
    Procs,
    WrkResult,
    accepts,
    close_all,
    count_open,
    ensure_running,
    free_port,
    http_get,
    machine_info,
    make_cert,
    open_idle_connections,
    pinned,
    process_tree_cpu_s,
    process_tree_rss_kb,
    raise_nofile_limit,
    run_wrk,
    signals_raise,
    start_nginx,
    update_results_section,
    wait_until,
)

BODY = ("edgegw bench upstream, a fixed body of one hundred bytes; " * 2)[:99] + "\n"
assert len(BODY) == 100
HOST = "bench.example.com"
CONTROLLER = "edgegw.io/gateway-controller"
IDLE_CONNECTIONS = 1000
CHANGE_TRIALS = 30
CHANGE_TIMEOUT_S = 5.0
T = TypeVar("T")


# ---------------------------------------------------------------- run state


@dataclass(frozen=True, slots=True)
class CpuPlan:
    proxy: str | None
    upstream: str | None
    client: str | None
    note: str


def cpu_plan(pin: bool) -> CpuPlan:
    """Which CPUs the proxy under test, the upstream and wrk get (taskset -c lists).

    Pinning only helps when each of the three can have its own cores. On 2 CPUs it made
    nginx ~25 % slower (wrk and the upstream, squeezed onto one core, became the bottleneck),
    which flatters edgegw, so below 4 CPUs everything floats.
    """
    n = os.cpu_count() or 1
    if not pin:
        return CpuPlan(None, None, None, "no CPU pinning (--no-pin)")
    if n < 4:
        return CpuPlan(None, None, None, f"no CPU pinning ({n} CPUs: too few to separate)")
    client = f"2-{n - 1}"
    return CpuPlan("0", "1", client, f"proxy on CPU 0, upstream on CPU 1, wrk on CPUs {client}")


@dataclass(frozen=True, slots=True)
class Pair:
    """One round of a paired comparison: edgegw's figure over nginx's, measured back to back."""

    rps: float
    p99: float
    cpu: float | None  # nginx's CPU µs per request over edgegw's: the work-only ratio


@dataclass
class Run:
    args: argparse.Namespace
    procs: Procs
    cpus: CpuPlan
    ports: set[int] = field(default_factory=set)
    wrk: dict[str, WrkResult] = field(default_factory=dict)
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU µs per request, proxy tree
    paired: dict[str, list[Pair]] = field(default_factory=dict)  # per-round edgegw / nginx
    rss: dict[str, float] = field(default_factory=dict)
    change_ms: list[float] = field(default_factory=list)
    change_timeouts: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    upstream_port: int = 0
    cert: tuple[Path, Path] | None = None

    @property
    def workdir(self) -> Path:
        return self.procs.workdir

    def port(self) -> int:
        """A free port not handed out before in this run."""
        while True:
            port = free_port()
            if port not in self.ports:
                self.ports.add(port)
                return port

    def attempt(self, key: str, action: Callable[..., T], *args: Any) -> T | None:
        """Run one step; on failure print and remember the error, return None and go on."""
        try:
            return action(*args)
        except (BenchError, OSError, ValueError) as exc:
            self.errors[key] = str(exc).strip()
            print(f"  ERROR in {key}: {exc}", flush=True)
        except Exception as exc:
            self.errors[key] = f"{type(exc).__name__}: {exc}"
            print(f"  ERROR in {key}:", flush=True)
            traceback.print_exc()
        return None

    def warm_up(self, url: str, headers: list[str]) -> None:
        run_wrk(url, min(1.0, self.args.duration), headers=headers, cpus=self.cpus.client)

    def measure(self, label: str, url: str, headers: list[str]) -> WrkResult:
        """One measured wrk run, printed as it ends."""
        result = run_wrk(url, self.args.duration, headers=headers, cpus=self.cpus.client)
        extra = f", {result.socket_errors} socket errors" if result.socket_errors else ""
        print(
            f"  {label:<34} {result.rps:>10,.0f} req/s   p50 {result.p50_ms:7.2f} ms"
            f"   p99 {result.p99_ms:7.2f} ms{extra}",
            flush=True,
        )
        return result

    def load(
        self, key: str, label: str, url: str, headers: list[str], pid: int | None = None
    ) -> None:
        """A short warm-up, then the measured wrk run, kept under `key`.

        With `pid`, also the CPU time that process tree spent per request during the run:
        the steadiest figure on a shared machine, where req/s moves with the neighbours.
        """
        self.warm_up(url, headers)
        before = process_tree_cpu_s(pid) if pid is not None else 0.0
        self.wrk[key] = result = self.measure(label, url, headers)
        if pid is not None and result.requests:
            spent = process_tree_cpu_s(pid) - before
            self.cpu_us[key] = spent / result.requests * 1e6
            print(f"  {'':<34} {self.cpu_us[key]:>10.1f} CPU us per request", flush=True)


# ---------------------------------------------------------------- nginx side


def start_upstream(run: Run) -> None:
    run.upstream_port = run.port()
    block = f"""    server {{
        listen 127.0.0.1:{run.upstream_port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{BODY.strip()}\\n";
        }}
    }}"""
    start_nginx(run.procs, "upstream", block, [run.upstream_port], run.cpus.upstream)
    status, body = http_get(run.upstream_port)
    if status != 200 or body != BODY.encode():
        raise BenchError(f"upstream answered {status} {body[:80]!r}")


def nginx_proxy_block(run: Run, port: int, tls_port: int) -> str:
    assert run.cert is not None
    crt, key = run.cert
    location = """        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"""
    return f"""    upstream bench_upstream {{
        server 127.0.0.1:{run.upstream_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{tls_port} ssl backlog=4096;
        ssl_certificate {crt};
        ssl_certificate_key {key};
{location}
    }}"""


def start_nginx_proxy(run: Run) -> tuple[Any, int, int]:
    """nginx, 1 worker, proxying HTTP and HTTPS to the upstream: (process, port, TLS port)."""
    port, tls_port = run.port(), run.port()
    block = nginx_proxy_block(run, port, tls_port)
    proc = start_nginx(run.procs, "nginx-proxy", block, [port, tls_port], run.cpus.proxy)
    return proc, port, tls_port


def bench_caddy(run: Run) -> None:
    """Caddy on one core (GOMAXPROCS=1), reverse_proxy to the upstream: what users compare."""
    if shutil.which("caddy") is None:
        raise BenchError("caddy is not installed (scripts/setup bench installs it)")
    port = run.port()
    caddyfile = run.workdir / "Caddyfile"
    caddyfile.write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n"
        f"http://:{port} {{\n\tbind 127.0.0.1\n"
        f"\treverse_proxy 127.0.0.1:{run.upstream_port}\n}}\n"
    )
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    env = {**os.environ, "GOMAXPROCS": "1", "XDG_DATA_HOME": str(run.workdir / "caddy-data"),
           "XDG_CONFIG_HOME": str(run.workdir / "caddy-config")}  # fmt: skip
    proc = run.procs.start("caddy", pinned(argv, run.cpus.proxy), env=env)
    try:
        wait_until(lambda: http_get(port, host=HOST)[0] == 200, 10, "caddy", interval=0.1)
        host = [f"Host: {HOST}"]
        url = f"http://127.0.0.1:{port}/"
        run.attempt(
            "caddy_ka", lambda: run.load("caddy_ka", "Caddy keep-alive", url, host, proc.pid)
        )
    finally:
        run.procs.stop(proc)


def bench_trio_floor(run: Run) -> None:
    """The least any trio proxy does (bench/trio_floor.py): edgegw's ceiling on this machine."""
    assert run.cert is not None
    port, tls_port = run.port(), run.port()
    floor = [sys.executable, str(ROOT / "bench" / "trio_floor.py"), str(run.upstream_port)]
    plain = run.procs.start("trio-floor", pinned([*floor, str(port)], run.cpus.proxy))
    try:
        wait_until(lambda: http_get(port)[0] == 200, 10, "trio floor proxy", interval=0.1)
        host = [f"Host: {HOST}"]
        url = f"http://127.0.0.1:{port}/"
        run.attempt(
            "floor_ka",
            lambda: run.load("floor_ka", "trio floor keep-alive", url, host, plain.pid),
        )
    finally:
        run.procs.stop(plain)
    for key, mode, what in [
        ("floor_https", "--tls", "trio floor HTTPS keep-alive"),
        ("floor_https_inline", "--tls-inline", "trio floor HTTPS keep-alive, TLS inline"),
    ]:
        tls_argv = [*floor, str(tls_port), mode, str(run.cert[0]), str(run.cert[1])]
        tls = run.procs.start(f"trio-floor{mode}", pinned(tls_argv, run.cpus.proxy))
        try:
            wait_until(lambda: accepts(tls_port), 10, "trio floor TLS proxy", interval=0.1)
            url = f"https://127.0.0.1:{tls_port}/"
            run.attempt(key, functools.partial(run.load, key, what, url, host, tls.pid))
        finally:
            run.procs.stop(tls)


# ---------------------------------------------------------------- edgegw config


def gateway_docs(http_port: int, https_port: int | None) -> list[dict[str, Any]]:
    listeners: list[dict[str, Any]] = [{"name": "http", "protocol": "HTTP", "port": http_port}]
    if https_port is not None:
        tls = {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "bench-tls"}]}
        listeners.append({"name": "https", "protocol": "HTTPS", "port": https_port, "tls": tls})
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "edgegw-bench"},
            "spec": {"controllerName": CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"gatewayClassName": "edgegw-bench", "listeners": listeners},
        },
    ]


def upstream_docs(upstream_port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "upstream"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": upstream_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "upstream-1",
                "labels": {"kubernetes.io/service-name": "upstream"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": upstream_port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def tls_secret_doc(crt: Path, key: Path) -> dict[str, Any]:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bench-tls"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(crt), "tls.key": b64(key)},
    }


def route_doc(
    name: str, section: str, hostnames: list[str], path: str | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [{"name": "upstream", "port": 80}]}
    if path is not None:
        rule["matches"] = [{"path": {"type": "PathPrefix", "value": path}}]
    spec: dict[str, Any] = {
        "parentRefs": [{"name": "bench", "sectionName": section}],
        "rules": [rule],
    }
    if hostnames:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def write_atomically(path: Path, docs: list[dict[str, Any]]) -> None:
    """Write YAML through a hidden temporary file and a rename, as an editor or CD would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, path)


def many_routes(count: int) -> list[dict[str, Any]]:
    return [
        route_doc(f"route-{i:04d}", "http", [f"route-{i:04d}.{HOST}"], f"/svc-{i:04d}")
        for i in range(count)
    ]


# ---------------------------------------------------------------- edgegw process


@dataclass
class Edgegw:
    name: str
    proc: Any
    port: int
    admin: int
    config: Path


def start_edgegw(
    run: Run, name: str, config: Path, port: int, probe: tuple[str, str], slow: float = 1.0
) -> Edgegw:
    """`edgegw run --workers 1` on `config`; returns once /readyz is 200 and `probe` routes."""
    admin = run.port()
    argv = [sys.executable, "-m", "edgegw", "run", "-c", str(config), "--workers", "1"]
    argv += ["--default-address", "127.0.0.1", "--admin", f"127.0.0.1:{admin}"]
    argv += ["--state-dir", str(run.workdir / f"{name}-state"), "--log-level", "warning"]
    proc = run.procs.start(name, pinned(argv, run.cpus.proxy), cwd=ROOT)
    gw = Edgegw(name, proc, port, admin, config)

    def ready() -> bool:
        ensure_running(run.procs, name, proc)
        return http_get(admin, "/readyz")[0] == 200

    def routed() -> bool:
        ensure_running(run.procs, name, proc)
        return http_get(port, probe[1], host=probe[0])[0] == 200

    try:
        wait_until(ready, run.args.startup_timeout * slow, f"{name} /readyz = 200", interval=0.1)
        wait_until(routed, 10, f"{name} to answer 200 for {probe[0]}{probe[1]}", interval=0.1)
    except BaseException:
        tail = run.procs.log_tail(name)
        run.procs.stop(proc)
        if tail:
            print(f"  last output of {name}:\n{tail}", flush=True)
        raise
    return gw


def start_main_edgegw(run: Run) -> tuple[Edgegw, int, int]:
    """edgegw with an HTTP and an HTTPS listener, one route each to the upstream."""
    port, tls_port = run.port(), run.port()
    config = run.workdir / "edgegw-config"
    assert run.cert is not None
    write_atomically(config / "gateway.yaml", gateway_docs(port, tls_port))
    write_atomically(
        config / "backends.yaml", [*upstream_docs(run.upstream_port), tls_secret_doc(*run.cert)]
    )
    write_atomically(
        config / "routes.yaml",
        [route_doc("bench-http", "http", [HOST]), route_doc("bench-https", "https", [])],
    )
    return start_edgegw(run, "edgegw", config, port, (HOST, "/")), port, tls_port


def bench_nginx_and_edgegw(run: Run) -> None:
    """Steps 2-5, 7 and 8: nginx and edgegw side by side, measured in alternating rounds.

    Both proxies run at once (the idle one costs nothing) and each comparison is made in
    `--rounds` rounds, nginx then edgegw, then edgegw then nginx, and so on: each round's
    ratio comes from two runs seconds apart, so the neighbours' load on a shared machine, which
    moves nginx's req/s by a third over minutes, hits both alike. The checks take the median
    of the rounds' ratios; the table shows each proxy's mean.
    """
    nginx, port, tls_port = start_nginx_proxy(run)
    try:
        gw, gw_port, gw_tls_port = start_main_edgegw(run)
        try:
            host = [f"Host: {HOST}"]
            close = [*host, "Connection: close"]
            for kind, what, headers, rounds, tls in [
                ("ka", "keep-alive", host, run.args.rounds, False),
                ("close", "Connection: close", close, 1, False),
                ("https", "HTTPS keep-alive", host, run.args.rounds, True),
            ]:
                ours = gw_tls_port if tls else gw_port
                sides = [
                    (f"nginx_{kind}", f"nginx {what}", tls_port if tls else port, nginx.pid),
                    (f"edgegw_{kind}", f"edgegw {what}", ours, gw.proc.pid),
                ]
                scheme = "https" if tls else "http"
                run.attempt(kind, paired_rounds, run, kind, sides, headers, rounds, scheme)
            run.attempt("rss", lambda: measure_rss(run, gw))
            run.attempt("config_change", lambda: measure_config_change(run, gw))
        finally:
            run.procs.stop(gw.proc)
    finally:
        run.procs.stop(nginx)


def paired_rounds(
    run: Run,
    kind: str,
    sides: list[tuple[str, str, int, int]],
    headers: list[str],
    rounds: int,
    scheme: str,
) -> None:
    """`rounds` alternating rounds of nginx (sides[0]) and edgegw (sides[1]); see above."""
    results: dict[str, list[WrkResult]] = {key: [] for key, _, _, _ in sides}
    cpus: dict[str, list[float]] = {key: [] for key, _, _, _ in sides}
    for index in range(rounds):
        label = f" ({index + 1}/{rounds})" if rounds > 1 else ""
        for key, what, port, pid in sides if index % 2 == 0 else sides[::-1]:
            run.load(key, what + label, f"{scheme}://127.0.0.1:{port}/", headers, pid)
            results[key].append(run.wrk[key])
            if key in run.cpu_us:
                cpus[key].append(run.cpu_us.pop(key))
    (nginx_key, *_), (edgegw_key, *_) = sides
    pairs = run.paired.setdefault(kind, [])
    for index, (base, ours) in enumerate(zip(results[nginx_key], results[edgegw_key], strict=True)):
        have_cpu = len(cpus[nginx_key]) > index and len(cpus[edgegw_key]) > index
        cpu = cpus[nginx_key][index] / cpus[edgegw_key][index] if have_cpu else None
        pairs.append(Pair(ours.rps / base.rps, ours.p99_ms / base.p99_ms, cpu))
    for key in results:
        run.wrk[key] = mean_result(results[key])
        if cpus[key]:
            run.cpu_us[key] = statistics.fmean(cpus[key])


def start_routes_gateway(run: Run, count: int) -> tuple[Edgegw, str, str]:
    """An edgegw with `count` HTTPRoutes: (gateway, URL, Host) of a request for a late route."""
    key = f"edgegw_{count}"
    port = run.port()
    config = run.workdir / f"edgegw-routes-{count}"
    write_atomically(config / "gateway.yaml", gateway_docs(port, None))
    write_atomically(config / "backends.yaml", upstream_docs(run.upstream_port))
    write_atomically(config / "routes.yaml", many_routes(count))
    target = count - 2
    host, path = f"route-{target:04d}.{HOST}", f"/svc-{target:04d}/item"
    gw = start_edgegw(run, key, config, port, (host, path), slow=max(1.0, count / 300))
    return gw, f"http://127.0.0.1:{port}{path}", host


def bench_edgegw_routes(run: Run) -> None:
    """Step 6: 10 vs 1,000 HTTPRoutes.

    Both gateways run side by side (the idle one costs nothing) and are measured in the order
    10, 1000, 1000, 10, so that drift on a noisy machine hits both alike; each figure is the
    mean of its two runs.
    """
    gateways: dict[int, tuple[Edgegw, str, str]] = {}
    try:
        for count in (10, 1000):
            started = run.attempt(f"edgegw_{count}", start_routes_gateway, run, count)
            if started is not None:
                gateways[count] = started
        samples: dict[int, list[WrkResult]] = {count: [] for count in gateways}
        for count, (_, url, host) in gateways.items():
            run.attempt(f"edgegw_{count}", run.warm_up, url, [f"Host: {host}"])
        for count in (10, 1000, 1000, 10):
            if count in gateways:
                _, url, host = gateways[count]
                label = f"edgegw {count:,} routes"
                result = run.attempt(f"edgegw_{count}", run.measure, label, url, [f"Host: {host}"])
                if result is not None:
                    samples[count].append(result)
        for count, results in samples.items():
            if len(results) == 2:
                run.wrk[f"edgegw_{count}"] = mean_result(results)
    finally:
        for gw, _, _ in gateways.values():
            run.procs.stop(gw.proc)


def mean_result(results: list[WrkResult]) -> WrkResult:
    n = len(results)
    return WrkResult(
        rps=sum(r.rps for r in results) / n,
        p50_ms=sum(r.p50_ms for r in results) / n,
        p99_ms=sum(r.p99_ms for r in results) / n,
        requests=sum(r.requests for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        non_2xx=sum(r.non_2xx for r in results),
    )


def measure_rss(run: Run, gw: Edgegw) -> None:
    """Step 7: VmRSS of edgegw (and any children) while 1,000 idle keep-alive clients wait."""
    before_kb, _ = process_tree_rss_kb(gw.proc.pid)
    socks = open_idle_connections(gw.port, IDLE_CONNECTIONS, HOST)
    try:
        time.sleep(2.0)
        held_kb, nprocs = process_tree_rss_kb(gw.proc.pid)
        still_open = count_open(socks)
    finally:
        close_all(socks)
    if still_open < IDLE_CONNECTIONS:
        raise BenchError(f"edgegw closed {IDLE_CONNECTIONS - still_open} idle connections early")
    run.rss = {"before_mb": before_kb / 1024, "held_mb": held_kb / 1024, "processes": nprocs}
    processes = f"{nprocs} process" + ("es" if nprocs > 1 else "")
    print(
        f"  edgegw RSS: {before_kb / 1024:.1f} MB after the load runs, "
        f"{held_kb / 1024:.1f} MB holding {still_open:,} idle connections ({processes})",
        flush=True,
    )


def time_route_change(gw: Edgegw, index: int) -> float | None:
    """Add a route for a new hostname; ms until it answers 200, None after the timeout."""
    host = f"change-{index:02d}.{HOST}"
    if http_get(gw.port, host=host)[0] == 200:
        raise BenchError(f"{host} answered 200 before its route existed")
    route = route_doc(f"change-{index:02d}", "http", [host])
    write_atomically(gw.config / f"change-{index:02d}.yaml", [route])
    start = time.perf_counter()
    while (poll := time.perf_counter()) - start < CHANGE_TIMEOUT_S:
        try:
            if http_get(gw.port, host=host, timeout=1.0)[0] == 200:
                return (time.perf_counter() - start) * 1000
        except OSError:
            pass
        time.sleep(max(0.0, 0.010 - (time.perf_counter() - poll)))
    return None


def measure_config_change(run: Run, gw: Edgegw) -> None:
    """Step 8: 30 new-route files, each timed from its rename to the first 200."""
    for index in range(CHANGE_TRIALS):
        ms = time_route_change(gw, index)
        if ms is None:
            run.change_timeouts += 1
            run.change_ms.append(CHANGE_TIMEOUT_S * 1000)
            if run.change_timeouts >= 3:
                raise BenchError("three config changes were not in force within 5 s")
        else:
            run.change_ms.append(ms)
        time.sleep(0.2)
    p50, p99 = percentile(run.change_ms, 50), percentile(run.change_ms, 99)
    print(f"  config change: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {CHANGE_TRIALS} changes")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    figure: str
    target: str
    ok: bool | None  # None: not measured


def ratio(run: Run, num: str, den: str, attr: str = "rps") -> float | None:
    if num not in run.wrk or den not in run.wrk:
        return None
    return float(getattr(run.wrk[num], attr)) / float(getattr(run.wrk[den], attr))


def paired_ratio(run: Run, kind: str, attr: str = "rps") -> float | None:
    """The median over the rounds of edgegw's figure over nginx's (None: not measured)."""
    pairs = run.paired.get(kind)
    if not pairs:
        return ratio(run, f"edgegw_{kind}", f"nginx_{kind}", "p99_ms" if attr == "p99" else attr)
    return float(statistics.median(getattr(pair, attr) for pair in pairs))


def ratio_check(name: str, value: float | None, target: float, at_least: bool = True) -> Check:
    sign = "≥" if at_least else "≤"
    if value is None:
        return Check(name, "not measured", f"{sign} {target:g}x", None)
    ok = value >= target if at_least else value <= target
    return Check(name, f"{value:.2f}x", f"{sign} {target:g}x", ok)


def checks(run: Run) -> list[Check]:
    result = [
        ratio_check("keep-alive req/s, edgegw / nginx", paired_ratio(run, "ka"), 0.33),
        ratio_check(
            "keep-alive req/s, edgegw / Caddy (1 core)", ratio(run, "edgegw_ka", "caddy_ka"), 1.0
        ),
        ratio_check(
            "keep-alive p99, edgegw / nginx",
            paired_ratio(run, "ka", "p99"),
            3,
            at_least=False,
        ),
        ratio_check(
            "Connection: close req/s, edgegw / nginx",
            paired_ratio(run, "close"),
            0.3,
        ),
        ratio_check(
            "HTTPS keep-alive req/s, edgegw / nginx",
            paired_ratio(run, "https"),
            0.33,
        ),
    ]
    routes = ratio(run, "edgegw_1000", "edgegw_10")
    if routes is None:
        result.append(Check("1,000 routes vs 10, req/s", "not measured", "≤ 10% slower", None))
    else:
        change = f"{(1 - routes) * 100:.1f}% slower" if routes <= 1 else "not slower"
        figure = f"{routes:.2f}x ({change})"
        result.append(Check("1,000 routes vs 10, req/s", figure, "≤ 10% slower", routes >= 0.9))
    if "held_mb" in run.rss:
        held = run.rss["held_mb"]
        figure = f"{held:.1f} MB"
        result.append(Check("RSS with 1,000 idle keep-alive conns", figure, "≤ 80 MB", held <= 80))
    else:
        result.append(
            Check("RSS with 1,000 idle keep-alive conns", "not measured", "≤ 80 MB", None)
        )
    result.append(change_check(run))
    return result


def change_check(run: Run) -> Check:
    name = "config change to traffic, p99"
    if len(run.change_ms) < CHANGE_TRIALS:
        return Check(name, "not measured", "≤ 1000 ms", None)
    p50, p99 = percentile(run.change_ms, 50), percentile(run.change_ms, 99)
    figure = f"{p99:.0f} ms (p50 {p50:.0f} ms)"
    if run.change_timeouts:
        figure += f", {run.change_timeouts} over {CHANGE_TIMEOUT_S:g} s"
    return Check(name, figure, "≤ 1000 ms", p99 <= 1000)


RUN_LABELS = [
    ("upstream", "upstream nginx, direct"),
    ("nginx_ka", "nginx proxy, keep-alive"),
    ("caddy_ka", "Caddy proxy (GOMAXPROCS=1), keep-alive"),
    ("floor_ka", "trio floor proxy, keep-alive (reference)"),
    ("edgegw_ka", "edgegw proxy, keep-alive"),
    ("nginx_close", "nginx proxy, Connection: close"),
    ("edgegw_close", "edgegw proxy, Connection: close"),
    ("nginx_https", "nginx proxy, HTTPS keep-alive"),
    ("floor_https", "trio floor proxy, HTTPS keep-alive (reference)"),
    ("floor_https_inline", "trio floor proxy, HTTPS keep-alive, TLS inline (reference)"),
    ("edgegw_https", "edgegw proxy, HTTPS keep-alive"),
    ("edgegw_10", "edgegw, 10 HTTPRoutes (mean of 2)"),
    ("edgegw_1000", "edgegw, 1,000 HTTPRoutes (mean of 2)"),
]


def figures_table(run: Run) -> str:
    lines = [
        "| run | req/s | p50 ms | p99 ms | proxy CPU µs/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in RUN_LABELS:
        res = run.wrk.get(key)
        cpu = f"{run.cpu_us[key]:.1f}" if key in run.cpu_us else ""
        if res is None:
            lines.append(f"| {label} | error | | | |")
        else:
            lines.append(
                f"| {label} | {res.rps:,.0f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {cpu} |"
            )
    return "\n".join(lines)


def ratios_text(run: Run) -> str:
    lines = []
    for what, num, den in [
        ("keep-alive", "edgegw_ka", "nginx_ka"),
        ("keep-alive vs Caddy on one core", "edgegw_ka", "caddy_ka"),
        ("Connection: close", "edgegw_close", "nginx_close"),
        ("HTTPS keep-alive", "edgegw_https", "nginx_https"),
        ("1,000 vs 10 routes", "edgegw_1000", "edgegw_10"),
        ("nginx vs upstream direct", "nginx_ka", "upstream"),
        ("trio floor vs nginx, keep-alive", "floor_ka", "nginx_ka"),
        ("trio floor vs nginx, HTTPS", "floor_https", "nginx_https"),
        ("trio floor vs nginx, HTTPS, TLS inline", "floor_https_inline", "nginx_https"),
        ("edgegw vs trio floor, keep-alive", "edgegw_ka", "floor_ka"),
        ("edgegw vs trio floor, HTTPS", "edgegw_https", "floor_https"),
        ("edgegw vs trio floor, HTTPS, TLS inline", "edgegw_https", "floor_https_inline"),
    ]:
        rps, p99 = ratio(run, num, den), ratio(run, num, den, "p99_ms")
        if rps is None or p99 is None:
            lines.append(f"- {what}: not measured")
        else:
            lines.append(f"- {what}: req/s {rps:.2f}x, p99 {p99:.2f}x ({num} / {den})")
    return "\n".join(lines)


def rounds_text(run: Run) -> str:
    """Each paired comparison round by round: req/s, p99 and CPU-per-request ratios."""
    lines = []
    for kind, what in [("ka", "keep-alive"), ("close", "Connection: close"), ("https", "HTTPS")]:
        pairs = run.paired.get(kind)
        if not pairs:
            continue
        rps = ", ".join(f"{pair.rps:.2f}" for pair in pairs)
        p99 = ", ".join(f"{pair.p99:.2f}" for pair in pairs)
        cpu = ", ".join(f"{pair.cpu:.2f}" for pair in pairs if pair.cpu is not None)
        median = paired_ratio(run, kind)
        lines.append(
            f"- {what}, edgegw / nginx by round: req/s {rps} (median {median:.2f}); "
            f"p99 {p99}; nginx's CPU per request over edgegw's {cpu}"
        )
    return "\n".join(lines)


def checks_table(items: list[Check]) -> str:
    lines = ["| check | figure | target | result |", "|---|---|---|---|"]
    for item in items:
        verdict = "PASS" if item.ok else "FAIL" if item.ok is False else "FAIL (not measured)"
        lines.append(f"| {item.name} | {item.figure} | {item.target} | {verdict} |")
    return "\n".join(lines)


def results_section(run: Run, items: list[Check]) -> str:
    info = machine_info()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    quick = " (--quick)" if run.args.quick else ""
    parts = [
        f"Measured {when} by `bench/http1`{quick}: wrk -t2 -c64, "
        f"{run.args.duration:g} s per run after a 1 s warm-up, all on 127.0.0.1; nginx and "
        f"edgegw side by side in {run.args.rounds} alternating rounds (keep-alive, HTTPS).",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}, "
        f"Python {info['python']}. CPU pinning: {run.cpus.note}. "
        f"edgegw at commit {info['commit']} (plus any uncommitted changes).",
        "Upstream: nginx, 1 worker, `return 200` with a 100-byte body. nginx proxy: 1 worker, "
        '`keepalive 64` upstream pool, `proxy_http_version 1.1`, `Connection ""`. '
        "edgegw: `edgegw run --workers 1`. trio floor: `bench/trio_floor.py`, the least a "
        "trio proxy can do (no routing, no header handling, pooled upstream connections): "
        "the ceiling for any proxy on trio on this machine. Its HTTPS rows: the stdlib's "
        "`trio.SSLStream`, and TLS inline (pyOpenSSL on memory BIOs, OpenSSL called "
        "directly, as edgegw's `TLSIO` does).",
        figures_table(run),
        "Ratios (of the means):\n\n" + ratios_text(run),
        "Rounds (the checks take the median):\n\n" + rounds_text(run),
        checks_table(items),
    ]
    if "held_mb" in run.rss:
        parts.append(
            f"edgegw RSS: {run.rss['before_mb']:.1f} MB after the load runs, "
            f"{run.rss['held_mb']:.1f} MB while holding {IDLE_CONNECTIONS:,} idle connections."
        )
    if run.errors:
        errors = "\n".join(
            f"- {key}: {msg.splitlines()[0][:200]}" for key, msg in run.errors.items()
        )
        parts.append("Errors in this run:\n\n" + errors)
    return "\n\n".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/http1", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="3 s per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating nginx/edgegw rounds (keep-alive, HTTPS)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (configs, process logs)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--no-results", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for /readyz (longer for the 1,000-route config)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    return args


def run_all(run: Run) -> None:
    print("== upstream", flush=True)
    run.attempt("upstream", start_upstream, run)
    if "upstream" in run.errors:
        print("  no upstream, so nothing else can be measured", flush=True)
        return
    run.attempt(
        "upstream_direct",
        lambda: run.load(
            "upstream", "upstream direct", f"http://127.0.0.1:{run.upstream_port}/", []
        ),
    )
    print("== nginx and edgegw proxies, alternating rounds", flush=True)
    run.attempt("proxies", lambda: bench_nginx_and_edgegw(run))
    print("== Caddy proxy, one core", flush=True)
    run.attempt("caddy", lambda: bench_caddy(run))
    print("== trio floor proxy (reference)", flush=True)
    run.attempt("trio_floor", lambda: bench_trio_floor(run))
    print("== edgegw routing table size", flush=True)
    bench_edgegw_routes(run)


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[str]:
    """A temporary directory for configs, logs and pid files; kept with --keep."""
    if keep:
        yield tempfile.mkdtemp(prefix="edgegw-bench-http1-")
        return
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-http1-") as tmp:
        yield tmp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile_limit()
    with (
        signals_raise(),
        workdir(args.keep) as tmp,
        Procs(Path(tmp)) as procs,
    ):
        run = Run(args, procs, cpu_plan(not args.no_pin))
        print(f"bench/http1: {args.duration:g} s per run; {run.cpus.note}; temp dir {tmp}")
        run.cert = make_cert(Path(tmp), HOST)
        run_all(run)
    items = checks(run)
    print("\n== figures\n" + figures_table(run))
    print("\n== ratios\n" + ratios_text(run))
    print("\n== rounds\n" + rounds_text(run))
    print("\n== summary\n" + checks_table(items))
    if not args.no_results:
        update_results_section("HTTP/1.1", results_section(run, items))
        print("\nupdated the HTTP/1.1 section of bench/RESULTS.md")
    return 0 if all(item.ok for item in items) else 1


if __name__ == "__main__":
    sys.exit(main())
