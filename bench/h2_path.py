"""CPU and instructions per proxied request, whole gateway, trees side by side.

    python bench/h2_path.py TREE [TREE...] [--proto h2|https|http] [--requests N]
                            [--rounds R] [--callgrind | --syscalls | --steps] [--clients C]

Each TREE (a checkout of edgegw; ``floor`` for the trio floor of the protocol:
``bench/h2_trio_floor.py`` for h2, ``bench/trio_floor.py`` for HTTP/1.1, with
``--tls-inline`` for https) is started once as ``python -m edgegw run --workers 1`` on
`bench/h2`'s config, all behind one HTTP/1.1 nginx upstream answering 100 bytes (with
its Date and Server headers). h2load sends N requests per run: ``--proto h2`` (the
default) HTTP/2 over TLS with ``-c4 -m10``, ``https`` HTTP/1.1 keep-alive over TLS and
``http`` plain HTTP/1.1 keep-alive, both ``--h1 -c4``, one request at a time per
connection (as wrk). The rounds alternate the trees, and each run's CPU is read from the
gateway's own utime+stime, so h2load and nginx are not counted. `bench/RESULTS.md`
("HTTP/2 path, step by step") used it.

``--callgrind`` runs the gateways under valgrind with instrumentation off, turns it on
around one run of N and one of 5N requests after a warm-up, and prints the difference
of the two instruction totals / 4N: the deterministic user-space work per request
(runs of the same code still spread about +-1 %: the batching of requests per read
follows the timing). Like every script here it wants a quiet machine for CPU figures.

``--syscalls`` attaches ``perf trace -s`` to each gateway (for the tree ``nginx``: an nginx
proxy with one worker, as `bench/http1` configures it) for one run of N requests after the
warm-up and prints its system calls per request by kind: the kernel half of the work, which
callgrind does not see. ``--steps`` runs each edgegw under ``trio_steps.py`` (a trio
instrument) and prints its task steps (trips through trio's scheduler) and run-loop
batches per request. ``--clients`` sets h2load's connections (default 4), ``--post N``
makes every request a POST of N bytes. With
``KEEP_TRACE=PREFIX`` in the environment, the perf and callgrind outputs are kept.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib import Procs, accepts, free_port, http_get, make_cert, start_nginx, wait_until

BENCH = Path(__file__).resolve().parent
BODY = ("edgegw bench upstream, a fixed body of one hundred bytes; " * 2)[:99] + "\n"
HOST = "bench.example.com"


def config(workdir: Path, port: int, upstream: int, crt: Path, key: Path, proto: str) -> Path:
    """`bench/h2`'s gateway: one HTTPS (or, for ``http``, HTTP) listener, one route."""
    tls_crt = base64.b64encode(crt.read_bytes()).decode()
    tls_key = base64.b64encode(key.read_bytes()).decode()
    where = workdir / "config"
    where.mkdir()
    tls = "tls: {certificateRefs: [{name: cert}]}"
    listener = f"{{name: https, protocol: HTTPS, port: {port}, {tls}}}"
    if proto == "http":
        listener = f"{{name: http, protocol: HTTP, port: {port}}}"
    (where / "all.yaml").write_text(f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: edgegw
  listeners:
  - {listener}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {tls_crt}, tls.key: {tls_key}}}
---
apiVersion: v1
kind: Service
metadata: {{name: up, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: up-0, namespace: default, labels: {{kubernetes.io/service-name: up}}}}
addressType: IPv4
ports: [{{name: http, port: {upstream}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: up, port: 80}}]}}]
""")
    return where


CLIENTS = [4]  # h2load's connections (--clients)
POST: list[str] = []  # h2load's -d FILE: each request a POST of that body (--post)


def h2load(port: int, requests: int, proto: str) -> None:
    scheme = "http" if proto == "http" else "https"
    argv = ["h2load", f"-n{requests}", f"-c{CLIENTS[0]}", "-t1", f"{scheme}://127.0.0.1:{port}/"]
    argv[2:2] = ["-m10"] if proto == "h2" else ["--h1", "-m1"]
    argv[2:2] = ["-d", POST[0]] if POST else []
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not done or int(done.group(1)) != requests:
        raise SystemExit(f"h2load did not get {requests} answers:\n{out[-1500:]}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(procs: Procs, tree: str, index: int, upstream: int, cert: tuple[Path, Path],
          callgrind: bool, proto: str, steps: bool = False) -> tuple[int, int, Path]:  # fmt: skip
    """Start one gateway (or the floor); its port, pid and working directory."""
    workdir = procs.workdir / f"t{index}"
    workdir.mkdir()
    port, admin = free_port(), free_port()
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no"] if callgrind else []
    wrap += [f"--callgrind-out-file={workdir}/cg.out"] if callgrind else []
    if tree == "nginx":
        crt, key = cert
        http2 = " http2" if proto == "h2" else ""
        ssl = f"ssl{http2}; ssl_certificate {crt}; ssl_certificate_key {key}"
        ssl = "" if proto == "http" else ssl
        proc = start_nginx(procs, f"proxy{index}", f"""    upstream up {{
        server 127.0.0.1:{upstream}; keepalive 64; keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} {ssl};
        location / {{ proxy_pass http://up; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }}
    }}""", [port], None)  # fmt: skip
        worker = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]
        return port, int(worker), workdir
    if tree == "floor":
        script = str(BENCH / ("h2_trio_floor.py" if proto == "h2" else "trio_floor.py"))
        argv = [*wrap, sys.executable, script, str(upstream), str(port)]
        argv += ["--tls-inline"] if proto == "https" else []
        argv += [] if proto == "http" else list(map(str, cert))
        proc = procs.start(f"gw{index}", argv, cwd=BENCH)
        wait_until(lambda: accepts(port), 300, "the floor to listen", interval=0.5)
        return port, proc.pid, workdir
    entry = [str(BENCH / "trio_steps.py")] if steps else ["-m", "edgegw"]
    argv = [*wrap, sys.executable, *entry, "run", "--workers", "1", "-c"]
    argv += [str(config(workdir, port, upstream, *cert, proto)), "--admin", f"127.0.0.1:{admin}"]
    argv += ["--default-address", "127.0.0.1", "--state-dir", str(workdir / "state")]
    env = {**os.environ, "TRIO_STEPS_OUT": str(workdir / "steps.txt")}
    proc = procs.start(f"gw{index}", [*argv, "--log-level", "warning"], cwd=Path(tree), env=env)
    wait_until(lambda: http_get(admin, "/readyz")[0] == 200, 300, "edgegw", interval=0.5)
    return port, proc.pid, workdir


def instructions(pid: int, port: int, workdir: Path, requests: int, proto: str) -> float:
    """callgrind's instructions per request: (total of 5N - total of N) / 4N."""
    totals = []
    for count in (requests, 5 * requests):
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
        h2load(port, count, proto)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True
        )
        before = set(workdir.glob("cg.out*"))
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
        wait_until(lambda seen=before: bool(set(workdir.glob("cg.out*")) - seen), 60, "a dump")
        time.sleep(0.5)  # the dump is being written
        (dump,) = set(workdir.glob("cg.out*")) - before
        if os.environ.get("KEEP_TRACE"):
            shutil.copy(dump, os.environ["KEEP_TRACE"] + f".{pid}.{count}")
        totals.append(int(re.search(r"^totals: (\d+)", dump.read_text(), re.M).group(1)))  # type: ignore[union-attr]
    return (totals[1] - totals[0]) / (4 * requests)


def syscalls(
    pid: int, port: int, workdir: Path, requests: int, proto: str
) -> dict[str, tuple[float, float]]:
    """System calls per request by name, from ``perf trace -s`` over one run of N requests:
    (calls, their wall-clock µs in the kernel, waits included) per request."""
    out = workdir / "perf-trace.txt"
    tracer = subprocess.Popen(["perf", "trace", "-s", "-p", str(pid), "-o", str(out)])
    time.sleep(1.0)  # attached
    h2load(port, requests, proto)
    tracer.send_signal(2)
    tracer.wait(60)
    if os.environ.get("KEEP_TRACE"):
        shutil.copy(out, os.environ["KEEP_TRACE"] + f".{pid}")
    calls: dict[str, tuple[float, float]] = {}
    for line in out.read_text().splitlines():
        found = re.match(r"\s+([a-z_0-9]+)\s+(\d+)\s+(\d+)\s+([\d.]+)", line)
        if found:
            count, msec = calls.get(found.group(1), (0.0, 0.0))
            count += int(found.group(2)) / requests
            calls[found.group(1)] = (count, msec + float(found.group(4)) * 1000 / requests)
    return calls


def steps(pid: int, port: int, workdir: Path, requests: int, proto: str) -> list[float]:
    """trio task steps, reschedules and run-loop batches per request (``trio_steps.py``)."""
    out = workdir / "steps.txt"
    counts = []
    for count in (0, requests):
        if count:
            h2load(port, count, proto)
        out.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)  # the counts so far, to TRIO_STEPS_OUT
        wait_until(out.exists, 10, "the counts")
        time.sleep(0.2)  # being written
        counts.append([int(n) for n in out.read_text().split()])
    return [(after - before) / requests for before, after in zip(*counts, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="edgegw checkouts, or 'floor'")
    parser.add_argument("--proto", choices=("h2", "https", "http"), default="h2")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--syscalls", action="store_true")
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--post", type=int, default=0, help="POST a body of this many bytes")
    args = parser.parse_args()
    CLIENTS[0] = args.clients
    with tempfile.TemporaryDirectory() as tmp, Procs(Path(tmp)) as procs:
        cert = make_cert(Path(tmp), HOST)
        if args.post:
            (Path(tmp) / "body").write_bytes(b"p" * args.post)
            POST.append(str(Path(tmp) / "body"))
        upstream = free_port()
        start_nginx(procs, "upstream", f"""    server {{
        listen 127.0.0.1:{upstream} backlog=4096;
        location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }}
    }}""", [upstream], None)  # fmt: skip
        gateways = [
            (tree, *start(procs, tree, i, upstream, cert, args.callgrind, args.proto, args.steps))
            for i, tree in enumerate(args.trees)
        ]
        for _, port, _, _ in gateways:
            h2load(port, 2000, args.proto)  # warm-up: connections, pools, remembered heads
        if args.callgrind:
            for tree, port, pid, workdir in gateways:
                count = instructions(pid, port, workdir, args.requests, args.proto)
                print(f"{tree:30} {count / 1000:8.1f}k instructions per request")
            return 0
        if args.steps:
            for tree, port, pid, workdir in gateways:
                counts = steps(pid, port, workdir, args.requests, args.proto)
                task_steps, scheduled, batches = counts
                print(f"{tree:30} per request: {task_steps:.2f} task steps,"
                      f" {scheduled:.2f} reschedules, {batches:.2f} run-loop batches")  # fmt: skip
            return 0
        if args.syscalls:
            for tree, port, pid, workdir in gateways:
                calls = syscalls(pid, port, workdir, args.requests, args.proto)
                listed = sorted(calls.items(), key=lambda item: -item[1][0])
                total = sum(count for count, _ in calls.values())
                print(f"{tree:30} {total:6.2f} syscalls per request (calls, µs):")
                shown = [f"{name} {n:.2f} {us:.1f}" for name, (n, us) in listed if n >= 0.005]
                print("    " + ", ".join(shown))
            return 0
        spent: dict[str, list[float]] = {tree: [] for tree in args.trees}
        for round_ in range(args.rounds):
            for tree, port, pid, _ in gateways[:: 1 if round_ % 2 == 0 else -1]:
                before = cpu_seconds(pid)
                h2load(port, args.requests, args.proto)
                spent[tree].append((cpu_seconds(pid) - before) / args.requests * 1e6)
        for tree, runs in spent.items():
            print(
                f"{tree:30} median {statistics.median(runs):6.1f} best {min(runs):6.1f}"
                f" CPU us per request  ({', '.join(f'{u:.1f}' for u in runs)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
