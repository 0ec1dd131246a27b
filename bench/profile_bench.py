"""Where edgegw's CPU goes per proxied request, by layer, next to nginx's whole cost.

Run through `bench/profile` (see bench/README.md). For each load (HTTP/1.1 keep-alive,
HTTPS keep-alive, HTTP/2 over TLS) it starts the same upstream and edgegw as `bench/http1`,
measures the CPU µs per request of edgegw's process (utime+stime, as the other benches) and
of an nginx proxy under the same load, and samples edgegw's stacks with py-spy during the
edgegw run. Each sample is charged to one layer by its innermost frames (`layer_of`), and
the layer's share of the samples times the measured CPU per request gives µs per request:
the figure the issue asks for ("where the remaining microseconds go").

Samples are wall-clock samples of the gateway's main thread while it is not idle (py-spy
drops samples in blocking waits); the process is CPU-bound under this load, so the shares
are shares of its CPU time. py-spy pauses the process to sample, which slows it a little;
the CPU per request comes from a run without py-spy.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from http1_bench import (
    HOST,
    Run,
    cpu_plan,
    nginx_proxy_block,
    start_main_edgegw,
    start_upstream,
)
from lib import (
    BenchError,
    Procs,
    machine_info,
    make_cert,
    process_tree_cpu_s,
    raise_nofile_limit,
    signals_raise,
    start_nginx,
    update_results_section,
)

# (layer, what its frames are) in the order a sample is tested against them: the first
# layer one of the innermost frames belongs to takes the sample.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "socket syscalls (send, recv)",
        ("fastio.py:send_all", "fastio.py:send_nowait", "fastio.py:recv", "socket.py"),
    ),
    ("TLS (OpenSSL, BIO moves)", ("OpenSSL/", "tls_stream.py", "ssl.py")),
    ("trio scheduler (tasks, checkpoints, cancel scopes)", ("trio/", "outcome/", "contextvars")),
    ("HTTP/1.1 parse and serialise (llhttp callbacks)", ("proto/http1.py", "httptools")),
    ("HTTP/2 codec (frames, HPACK, stream states)", ("proto/h2codec/", "proto/http2.py")),
    (
        "decision (routing, filters, policies)",
        ("net/decide.py", "routing/", "policy/", "proto/target.py", "net/guard.py"),
    ),
    (
        "upstream pool and exchange",
        ("net/upstream.py", "net/h1upstream.py", "net/h2upstream.py", "net/connection.py"),
    ),
    ("forward step and response streaming", ("net/proxy.py",)),
    (
        "front-end connection loop",
        ("net/http.py", "net/h2server.py", "net/fastio.py", "net/dispatch.py", "net/ports.py"),
    ),
    ("observability (metrics, access log)", ("observe.py", "admin/metrics.py", "accesslog.py")),
)
OTHER = "other"


def layer_of(frames: list[str]) -> str:
    """The layer of one sample: its innermost frame that names a known layer.

    A frame reads ``function (path:line)``. Library frames count for the layer that calls
    them only where a layer names the library (llhttp is ``httptools``); a leaf in, say,
    ``collections`` is charged to the edgegw frame that called it.
    """
    for frame in reversed(frames):
        name, _, where = frame.partition(" (")
        path = where.rstrip(")")
        key = f"{path.rsplit('/', 1)[-1].split(':')[0]}:{name.rsplit('.', 1)[-1]}"
        for layer, marks in LAYERS:
            for mark in marks:
                if mark in path or (":" in mark and key.startswith(mark)):
                    return layer
    return OTHER


def layer_shares(raw: str) -> Counter[str]:
    """Samples per layer from py-spy's ``--format raw`` output (main thread only)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit() or stack.startswith("Thread._bootstrap"):
            continue  # worker threads: watchfiles' watcher waiting in native code
        counts[layer_of(stack.split(";"))] += int(n)
    return counts


@dataclass
class Load:
    key: str
    title: str
    nginx_cpu_us: float | None = None
    edgegw_cpu_us: float | None = None
    edgegw_rps: float | None = None
    layers: Counter[str] = field(default_factory=Counter)


def h2load(url: str, duration: float) -> int:
    """Requests done by one bounded h2load run (16 connections, 10 streams each)."""
    argv = ["h2load", "-c16", "-m10", "-t2", "-D", f"{duration:g}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    for line in done.stdout.splitlines():
        if line.startswith("requests:"):
            parts = line.split()
            succeeded = int(parts[parts.index("succeeded,") - 1])
            if succeeded:
                return succeeded
    raise BenchError(f"h2load failed: {done.stdout[-400:]} {done.stderr[-400:]}")


def wrk(url: str, duration: float) -> int:
    """Requests done by one bounded wrk run (2 threads, 64 connections)."""
    argv = ["wrk", "-t2", "-c64", f"-d{duration:g}s", "-H", f"Host: {HOST}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == "requests" and parts[2] == "in":
            return int(parts[0])
    raise BenchError(f"wrk failed: {done.stdout[-400:]} {done.stderr[-400:]}")


def drive(load: str, url: str, duration: float) -> int:
    return h2load(url, duration) if load == "h2" else wrk(url, duration)


def cpu_per_request(pid: int, load: str, url: str, duration: float) -> tuple[float, float]:
    """(CPU µs per request of `pid`'s tree, req/s) over one run after a 1 s warm-up."""
    drive(load, url, 1.0)
    before = process_tree_cpu_s(pid)
    requests = drive(load, url, duration)
    return (process_tree_cpu_s(pid) - before) / requests * 1e6, requests / duration


def sample(pid: int, load: str, url: str, duration: float, out: Path) -> Counter[str]:
    """py-spy's samples of `pid` during one run, per layer."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    argv = [spy, "record", "-p", str(pid), "-r", "250", "-d", f"{duration:g}"]
    argv += ["-f", "raw", "-o", str(out)]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as spyproc:
        drive(load, url, duration + 1.0)
        _, err = spyproc.communicate(timeout=duration + 30)
    if spyproc.returncode != 0 or not out.exists():
        raise BenchError(f"py-spy failed: {err.decode(errors='replace')[-400:]}")
    return layer_shares(out.read_text())


LOADS = (
    Load("http1", "HTTP/1.1 keep-alive (wrk -t2 -c64)"),
    Load("https", "HTTPS keep-alive (wrk -t2 -c64)"),
    Load("h2", "HTTP/2 over TLS (h2load -c16 -m10)"),
)


def urls(port: int, tls_port: int) -> dict[str, str]:
    return {
        "http1": f"http://127.0.0.1:{port}/",
        "https": f"https://127.0.0.1:{tls_port}/",
        "h2": f"https://127.0.0.1:{tls_port}/",
    }


def measure_nginx(run: Run, loads: tuple[Load, ...]) -> None:
    port, tls_port = run.port(), run.port()
    block = nginx_proxy_block(run, port, tls_port).replace(" ssl backlog", " ssl http2 backlog")
    proc = start_nginx(run.procs, "nginx-proxy", block, [port, tls_port], None)
    try:
        for load in loads:
            url = urls(port, tls_port)[load.key]
            load.nginx_cpu_us, _ = cpu_per_request(proc.pid, load.key, url, run.args.duration)
            print(f"  nginx  {load.title:<40} {load.nginx_cpu_us:7.1f} CPU us/request")
    finally:
        run.procs.stop(proc)


def measure_edgegw(run: Run, loads: tuple[Load, ...]) -> None:
    gw, port, tls_port = start_main_edgegw(run)
    try:
        for load in loads:
            url = urls(port, tls_port)[load.key]
            load.edgegw_cpu_us, load.edgegw_rps = cpu_per_request(
                gw.proc.pid, load.key, url, run.args.duration
            )
            out = run.workdir / f"{load.key}.raw"
            load.layers = sample(gw.proc.pid, load.key, url, run.args.duration, out)
            print(f"  edgegw {load.title:<40} {load.edgegw_cpu_us:7.1f} CPU us/request")
    finally:
        run.procs.stop(gw.proc)


def table(load: Load) -> str:
    total = sum(load.layers.values()) or 1
    cpu = load.edgegw_cpu_us or 0.0
    rows = [
        f"### {load.title}",
        "",
        f"edgegw {cpu:.1f} CPU µs/request ({load.edgegw_rps or 0:,.0f} req/s); nginx "
        f"{load.nginx_cpu_us or 0:.1f}; {total:,} samples.",
        "",
        "| layer | share | µs/request |",
        "|---|---:|---:|",
    ]
    for layer, n in load.layers.most_common():
        rows.append(f"| {layer} | {100 * n / total:.1f} % | {cpu * n / total:.1f} |")
    return "\n".join(rows)


def results(run: Run, loads: tuple[Load, ...]) -> str:
    info = machine_info()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"`bench/profile`, {when}; commit {info.get('commit', '?')}, "
        f"{info.get('cpu', '?')}, python {info.get('python', '?')}. {run.args.duration:g} s "
        "per run after a 1 s warm-up; CPU per request from the process's utime+stime in a "
        "run without the profiler; shares from py-spy (250 Hz) in a second run. A sample "
        "counts for the innermost frame that names a layer (`layer_of`). Modules compiled "
        "with mypyc (`edgegw version` names them) run as C, which py-spy does not see: "
        "their time counts for the layer that calls them (the HTTP/1.1 parser's for the "
        "front-end loop and the upstream exchange)."
    )
    return "\n\n".join([head, *(table(load) for load in loads if load.layers)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/profile", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--quick", action="store_true", help="3 s per run")
    parser.add_argument("--no-results", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    parser.add_argument("--only", choices=[load.key for load in LOADS], action="append")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    return args


@contextlib.contextmanager
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-profile-") as tmp:
        yield tmp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads = tuple(load for load in LOADS if not args.only or load.key in args.only)
    raise_nofile_limit()
    with signals_raise(), workdir() as tmp, Procs(Path(tmp)) as procs:
        run = Run(args, procs, cpu_plan(False))
        run.cert = make_cert(Path(tmp), HOST)
        start_upstream(run)
        print("== nginx proxy", flush=True)
        measure_nginx(run, loads)
        print("== edgegw", flush=True)
        measure_edgegw(run, loads)
    text = results(run, loads)
    print("\n" + text)
    if not args.no_results:
        update_results_section("Where the CPU goes", text)
        print("\nupdated the 'Where the CPU goes' section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
