"""ClientTrafficPolicy ``connection.bufferLimit``: from YAML to what a port's connections use."""

from __future__ import annotations

import msgspec
import pytest

from edgegw import ir
from edgegw.api import envoypolicies as ep
from edgegw.api.meta import dec_hook
from edgegw.net.dispatch import compile_runtime
from edgegw.net.ports import PortRuntime
from edgegw.proto.http2 import H2Limits
from edgegw.translate.clientconvert import Problem, client_fields

DEFAULT = H2Limits()


def _fields(connection: object) -> dict[str, object]:
    target = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    raw = {"targetRefs": [target], "connection": connection}
    return client_fields(msgspec.convert(raw, ep.ClientTrafficPolicySpec, dec_hook=dec_hook))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("32Ki", 32768), (65536, 65536), ("50M", 50_000_000), ("4Gi", None), (0, None)],
)
def test_quantities_as_envoy_gateway_reads_them(value: object, expected: int | None) -> None:
    if expected is None and value != 0:
        with pytest.raises(Problem, match=r"spec\.connection\.bufferLimit: .* out of range"):
            _fields({"bufferLimit": value})
        return
    assert _fields({"bufferLimit": value}).get("buffer_limit") == expected


def _runtime(*policies: ir.ClientPolicy) -> PortRuntime:
    listeners = tuple(
        ir.Listener(
            gateway_namespace="default",
            gateway_name="gw",
            name=f"l{i}",
            protocol="HTTP",
            port=80,
            client_policy=policy,
        )
        for i, policy in enumerate(policies)
    )
    return compile_runtime(ir.Port(address="127.0.0.1", port=80, listeners=listeners))


def _policy(**fields: object) -> ir.ClientPolicy:
    return ir.ClientPolicy(name="default/p", **fields)  # type: ignore[arg-type]


def test_without_the_field_nothing_changes() -> None:
    runtime = _runtime(_policy(connection_limit=5))
    assert runtime.read_size is None
    assert runtime.h2_limits is None


@pytest.mark.parametrize(
    ("limit", "read", "window"),
    [
        (32768, 32768, 65535),  # Envoy Gateway's own default and Envoy's edge advice
        (1024, 4096, 65535),  # soft: never a read below 4 KiB, never a window below 65,535
        (262144, 65536, 262144),
        (100 << 20, 65536, None),  # above edgegw's defaults: they stay
    ],
)
def test_reads_and_http2_windows_follow_the_limit(
    limit: int, read: int, window: int | None
) -> None:
    runtime = _runtime(_policy(buffer_limit=limit))
    assert runtime.read_size == read
    h2 = runtime.h2_limits
    assert h2 is not None
    assert h2.initial_window_size == (window or DEFAULT.initial_window_size)
    assert h2.connection_window_size == (window or DEFAULT.connection_window_size)
    assert h2.max_concurrent_streams == DEFAULT.max_concurrent_streams


def test_explicit_http2_windows_win() -> None:
    options = ir.HTTP2Options(initial_stream_window_size=131072, max_concurrent_streams=9)
    runtime = _runtime(_policy(buffer_limit=32768, http2=options))
    h2 = runtime.h2_limits
    assert h2 is not None
    assert (h2.initial_window_size, h2.connection_window_size) == (131072, 65535)
    assert h2.max_concurrent_streams == 9


def test_per_port_the_first_listener_that_sets_it_wins() -> None:
    runtime = _runtime(_policy(), _policy(buffer_limit=16384), _policy(buffer_limit=8192))
    assert runtime.read_size == 16384
