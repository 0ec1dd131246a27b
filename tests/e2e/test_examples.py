"""The example config in config/ works out of the box, exactly as README.md shows it."""

from __future__ import annotations

import collections
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Gateway, Process, accepts, curl, echoed, edgegw_cmd, wait_for

HTTP = "http://127.0.0.1:8080"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Gateway]:
    """scripts/demo, by hand: three echo backends on 9001-9003 and config/ as shipped."""
    backends = [
        Process(
            edgegw_cmd("echo", "--listen", f"127.0.0.1:900{n}", "--name", f"echo-{n}"),
            tmp_path / f"echo-{n}.log",
        )
        for n in (1, 2, 3)
    ]
    for n in (1, 2, 3):  # a request before a backend listens would get 503
        wait_for(lambda n=n: accepts(9000 + n), what=f"echo-{n}")
    gateway = Gateway(tmp_path)
    gateway.config.rmdir()
    shutil.copytree(ROOT / "config", gateway.config)
    gateway.start()
    yield gateway
    gateway.stop()
    for backend in backends:
        backend.stop()


def get(host: str, path: str = "/", *extra: str) -> dict[str, object]:
    result = curl("-H", f"Host: {host}", *extra, f"{HTTP}{path}")
    assert result.returncode == 0, result.stderr
    return echoed(result.stdout)


def test_every_example_flow(demo: Gateway) -> None:
    wait_for(lambda: curl(HTTP).returncode == 0, what="port 8080")
    basic = collections.Counter(get("basic.example.com")["pod"] for _ in range(10))
    assert set(basic) == {"echo-1", "echo-2"}

    canary = collections.Counter(get("canary.example.com")["pod"] for _ in range(200))
    assert 5 <= canary["echo-2"] <= 40, canary  # 10% of 200

    assert get("app.example.com", "/", "-H", "x-version: v2")["pod"] == "echo-2"
    assert get("app.example.com")["pod"] == "echo-1"

    assert get("rewrite.example.com", "/api/v1/items")["path"] == "/items"
    assert get("rewrite.example.com", "/api/v2/items")["pod"] == "echo-2"

    seen = get("headers.example.com", "/", "-H", "x-debug: 1")
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["x-request-source"] == ["edgegw"]
    assert "x-debug" not in headers
    response = curl("-si", "-H", "Host: headers.example.com", f"{HTTP}/")
    assert "x-served-by: edgegw" in response.stdout.lower()

    for host in ("example.org", "www.example.org", "shop.example.org", "a.shop.example.org"):
        assert get(host)["pod"] == "echo-3"

    assert get("api.example.com", "/users/7")["pod"] == "echo-1"
    assert get("api.example.com", "/orders/42")["pod"] == "echo-2"
    assert get("api.example.com", "/payments")["pod"] == "echo-3"

    secure = curl(
        "--cacert",
        str(ROOT / "config/tls/demo-tls.crt"),
        "--resolve",
        "secure.example.com:8443:127.0.0.1",
        "https://secure.example.com:8443/",
    )
    assert secure.returncode == 0, secure.stderr
    assert echoed(secure.stdout)["pod"] == "echo-1"

    # config/certificates/local-ca.yaml: issued at start by the local CA it also issues
    root = demo.state / "certificates" / "default" / "local-root.crt"
    local = wait_for(
        lambda: (r := curl("--cacert", str(root), "--resolve", "app.localhost:8444:127.0.0.1",
                           "https://app.localhost:8444/")).returncode == 0 and r,
        what="HTTPS from the local CA",
    )  # fmt: skip
    assert echoed(local.stdout)["pod"] == "echo-1"

    # config/routes/homelab.yaml: Envoy Gateway policies
    homelab = curl("-sS", "--compressed", "-D", "-", "-H", "Host: homelab.example.com", HTTP)
    assert "content-encoding: zstd" in homelab.stdout.lower()
    assert get("homelab.example.com")["pod"] == "echo-1"
    refused = curl(
        "--interface",
        "127.0.0.2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: homelab.example.com",
        f"{HTTP}/",
    )
    assert refused.stdout == "403"
