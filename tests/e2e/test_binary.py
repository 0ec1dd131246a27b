"""dist/edgegw (``make binary``) runs on the system python3 alone, native extensions included.

The binary is built here, once per session, with ``make binary`` (a no-op when it is up to date,
~10 s otherwise; pip fetches the dependencies the first time), so these tests never skip on a
clean checkout. Every run of the binary is from ``/`` with a bare environment: no venv, no
source tree on the path, ``HOME`` a fresh directory (the zipapp unpacks its native extensions
into ``$HOME/.shiv`` on first start), exactly as systemd would start it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, free_port, request, wait_for
from tests.unit.test_compiled import build_can_compile

pytestmark = pytest.mark.e2e

BINARY = ROOT / "dist" / "edgegw"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@pytest.fixture(scope="session")
def binary() -> Path:
    """dist/edgegw, rebuilt by make when any source is newer; one build per session.

    A lock keeps two test sessions (or two people) from building into the same file at once.
    """
    if SYSTEM_PYTHON is None:
        pytest.skip("no system python3 to run the binary on")
    venv_bin = Path(sys.executable).parent
    (ROOT / "dist").mkdir(exist_ok=True)
    with (ROOT / "dist" / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["make", "binary", f"PYTHON={sys.executable}", f"SHIV={venv_bin / 'shiv'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, f"make binary failed:\n{done.stdout}\n{done.stderr}"
    return BINARY


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **extra}


def run_binary(
    binary: Path, home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run from / with a bare environment: no venv, no source tree on the path."""
    return subprocess.run(
        [str(binary), *args],
        cwd="/",
        env=bare_env(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextlib.contextmanager
def serving(binary: Path, home: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``/usr/bin/python3 dist/edgegw ARGS`` in the background, stopped with SIGTERM."""
    assert SYSTEM_PYTHON is not None
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(binary), *args],
            cwd="/",
            env=bare_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def test_binary_is_one_executable_file_for_the_system_python(binary: Path) -> None:
    assert binary.is_file()
    assert os.access(binary, os.X_OK)
    assert binary.read_bytes()[:64].startswith(b"#!/usr/bin/env python3\n")


def test_binary_prints_its_version(binary: Path, tmp_path: Path) -> None:
    done = run_binary(binary, tmp_path, "version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("edgegw ")


def test_binary_runs_the_parsers_mypyc_compiled_where_the_build_could(
    binary: Path, tmp_path: Path
) -> None:
    """make binary builds with this venv's Python: compiled if it has a C compiler and headers."""
    code = (
        "import edgegw.proto.http1 as a, edgegw.proto.h2codec.receive as b; "
        "print(a.__file__); print(b.__file__)"
    )
    done = run_binary(binary, tmp_path, "-c", code, SHIV_INTERPRETER="1")
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert len(files) == 2
    compiled = build_can_compile() and not os.environ.get("EDGEGW_NO_MYPYC")
    for file in files:
        assert file.startswith(str(tmp_path / ".shiv"))
        assert file.endswith(".so" if compiled else ".py")
    version = run_binary(binary, tmp_path, "version")
    if compiled:
        assert "compiled with mypyc: " in version.stdout, version.stdout + version.stderr
        assert "edgegw.proto.http1," in version.stdout
        assert "edgegw.proto.h2codec.receive," in version.stdout
    else:
        assert "pure Python" in version.stdout, version.stdout + version.stderr


def test_binary_carries_the_native_extensions(binary: Path, tmp_path: Path) -> None:
    code = (
        "import sys, msgspec, httptools, watchfiles, yaml, trio, OpenSSL, edgegw.l2.run;"
        "from cryptography.hazmat.bindings import _rust;"
        "print(sys.executable, msgspec.__file__)"
    )
    done = run_binary(binary, tmp_path, "-c", code, SHIV_INTERPRETER="1")
    assert done.returncode == 0, done.stderr
    executable, msgspec_path = done.stdout.split()
    assert SYSTEM_PYTHON is not None
    assert Path(executable).resolve() == Path(SYSTEM_PYTHON).resolve()
    assert msgspec_path.startswith(str(tmp_path / ".shiv"))


def test_binary_checks_the_example_config(binary: Path, tmp_path: Path) -> None:
    done = run_binary(binary, tmp_path, "check", "-c", str(ROOT / "config"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout + done.stderr


def test_binary_check_fails_on_a_broken_config(binary: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "bad.yaml").write_text("kind: Gateway\nmetadata: [unclosed\n")
    done = run_binary(binary, tmp_path, "check", "-c", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bad.yaml" in done.stdout + done.stderr


CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [app.example.com]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app-1, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: {echo_port}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"""


def test_binary_serves_a_request_end_to_end(binary: Path, tmp_path: Path) -> None:
    port, echo_port, admin_port = free_port(), free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "app.yaml").write_text(textwrap.dedent(CONFIG.format(port=port, echo_port=echo_port)))
    home = tmp_path / "home"
    home.mkdir()
    echo_args = ["echo", "--listen", f"127.0.0.1:{echo_port}", "--name", "from-binary"]
    run_args = ["run", "-c", str(config), "--admin", f"127.0.0.1:{admin_port}",
                "--state-dir", str(tmp_path / "state"), "--default-address", "127.0.0.1",
                "--drain-timeout", "2"]  # fmt: skip
    with (
        serving(binary, home, tmp_path / "echo.log", *echo_args),
        serving(binary, home, tmp_path / "gateway.log", *run_args) as gateway,
    ):
        try:
            status, _, body = wait_for(
                lambda: request(port, "/hello?x=1", host="app.example.com", timeout=2),
                timeout=60,  # the first start unpacks the zipapp
                what="a request through dist/edgegw run",
            )
        except AssertionError:
            raise AssertionError((tmp_path / "gateway.log").read_text(errors="replace")) from None
        assert status == 200, body
        echoed = json.loads(body)
        assert echoed["pod"] == "from-binary"
        assert echoed["path"] == "/hello?x=1"
        assert echoed["host"] == "app.example.com"

        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(15) == 0
    assert (tmp_path / "state" / "status.yaml").is_file()
