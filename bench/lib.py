"""Helpers shared by the bench scripts: processes, ports, wrk, nginx, certificates, RESULTS.md.

Theory of operation: every benchmark starts its servers through a `Procs`, which owns each
child in its own session, writes its output to a file in the run's temporary directory and
stops it (SIGTERM, then SIGKILL of its process group) when the `with` block ends, whatever
happened inside. Every wait here has a deadline, so a broken target turns into an exception,
never a hang.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"


class BenchError(Exception):
    """A step could not be measured; the message says why."""


# ---------------------------------------------------------------- processes and ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile_limit() -> None:
    """Raise the soft open-files limit to the hard one (children inherit it)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` run under `taskset -c cpus` when cpus is set and taskset exists."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *argv]
    return list(argv)


class Procs:
    """The processes one benchmark started; all are stopped when the block ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._procs:
            self.stop(self._procs[-1][1])

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` with stdout and stderr in WORKDIR/NAME.log."""
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL the child's own process group."""
        self._procs = [(n, p) for n, p in self._procs if p is not proc]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a child wrote, for error messages."""
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Call `check` until it is true; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


def ensure_running(procs: Procs, name: str, proc: subprocess.Popen[bytes]) -> None:
    """BenchError with the child's last output if it has exited."""
    if proc.poll() is not None:
        raise BenchError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_tree_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS in kB summed over `pid` and its descendants, number of processes)."""
    total, count = 0, 0
    for current in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    count += 1
    return total, count


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for current in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


# ---------------------------------------------------------------- HTTP clients


def http_get(
    port: int,
    path: str = "/",
    host: str | None = None,
    tls: bool = False,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    """One GET to 127.0.0.1:port on a fresh connection; (status, body)."""
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if host:
            headers["Host"] = host
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _read_response(sock: socket.socket) -> None:
    """Read one HTTP/1.1 response with a Content-Length body off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"unexpected response: {head.splitlines()[0]!r}")
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed inside the body")
        body += chunk


def open_idle_connections(port: int, count: int, host: str) -> list[socket.socket]:
    """`count` keep-alive connections, each having made one request, left open and idle."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(sock)
            sock.sendall(request)
            _read_response(sock)
    except BaseException:
        close_all(socks)
        raise
    return socks


def count_open(socks: Sequence[socket.socket]) -> int:
    """How many of `socks` the peer has not closed (nothing readable, no EOF)."""
    alive = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            alive += 1 if sock.recv(1) else 0  # unexpected bytes: still open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def close_all(socks: Sequence[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


# ---------------------------------------------------------------- wrk


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not match:
        raise BenchError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """Requests/sec, p50/p99 (from --latency), request and error counts of a wrk run."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    if not rps or not total:
        raise BenchError(f"unreadable wrk output:\n{text}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        requests=int(total.group(1)),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(
    url: str,
    duration: float,
    connections: int = 64,
    threads: int = 2,
    headers: Sequence[str] = (),
    cpus: str | None = None,
) -> WrkResult:
    """One bounded wrk run; BenchError when it fails or most answers are not 2xx."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    argv += ["--timeout", "5s"]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    try:
        done = subprocess.run(
            pinned(argv, cpus), capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    if result.requests == 0 or result.non_2xx > result.requests * 0.01:
        raise BenchError(f"{result.non_2xx} of {result.requests} answers were not 2xx: {url}")
    return result


# ---------------------------------------------------------------- nginx and certificates


def _user_directive() -> str:
    """Workers run as the current user (nginx only switches users when started as root)."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return f"user {user} {group};"


def nginx_config(workdir: Path, name: str, http_block: str) -> Path:
    """A self-contained nginx.conf (one worker, own pid/log/temp paths) in workdir/name."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"""{_user_directive()}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    keepalive_timeout 300s;
{http_block}
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def start_nginx(
    procs: Procs, name: str, http_block: str, ports: Sequence[int], cpus: str | None
) -> subprocess.Popen[bytes]:
    """Start nginx on a generated config and wait until every port in `ports` accepts."""
    conf = nginx_config(procs.workdir, name, http_block)
    argv = ["nginx", "-p", str(conf.parent), "-c", str(conf)]
    test = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    if test.returncode != 0:
        raise BenchError(f"nginx -t failed for {name}: {test.stderr.strip()}")
    proc = procs.start(name, pinned(argv, cpus))
    for port in ports:
        wait_until(lambda p=port: accepts(p), 10, f"{name} on port {port}")  # type: ignore[misc]
        ensure_running(procs, name, proc)
    return proc


def accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def make_cert(workdir: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for `hostname` and 127.0.0.1: (cert, key) paths."""
    crt, key = workdir / "tls.crt", workdir / "tls.key"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    argv += ["-nodes", "-days", "30", "-subj", f"/CN={hostname}"]
    argv += ["-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1"]
    argv += ["-keyout", str(key), "-out", str(crt)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise BenchError(f"openssl failed: {done.stderr.strip()}")
    return crt, key


# ---------------------------------------------------------------- machine and RESULTS.md


def machine_info() -> dict[str, str]:
    """nproc, CPU model, kernel, Python and the checked-out commit, for the results file."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        commit = done.stdout.strip() or commit
    return {
        "commit": commit,
        "nproc": str(os.cpu_count() or 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": f"{sys.version.split()[0]} ({Path(sys.base_prefix) / 'bin' / 'python3'})",
    }


RESULTS_SKELETON = """# edgegw benchmark results

Written by the scripts in `bench/` (see `bench/README.md`). Every figure in a section comes
from one run on one machine; compare the ratios, not the absolute numbers.

## HTTP/1.1

Not measured yet: run `bench/http1`.

## HTTP/2

Not measured yet.

## gRPC

Not measured yet.

## TCP

Not measured yet.

## UDP

Not measured yet.
"""


def update_results_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace the `## heading` section of RESULTS.md (up to the next `## `) with `body`."""
    text = path.read_text() if path.exists() else RESULTS_SKELETON
    section = f"## {heading}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.rstrip() + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every `finally` and `with` runs."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
