"""ClientTrafficPolicy path and header rules, fault draws and mergeType merges: pure pieces."""

from __future__ import annotations

import pytest

from edgegw import ir
from edgegw.api.meta import Quantity
from edgegw.policy.clientrequest import ClientRequestRules, Refusal
from edgegw.policy.fault import inject
from edgegw.proto.target import normalize_path_with
from edgegw.translate.policymerge import merge_specs


@pytest.mark.parametrize(
    ("action", "path", "want"),
    [
        ("KeepUnchanged", "/a%2Fb", ("/a%2Fb", False)),
        ("RejectRequest", "/a%2fb", (None, False)),
        ("RejectRequest", "/a%2Cb", ("/a%2Cb", False)),
        ("UnescapeAndForward", "/a%2Fb%5c..%5Cc", ("/a/c", False)),
        ("UnescapeAndRedirect", "/a%2Fb", ("/a/b", True)),
        ("UnescapeAndRedirect", "/a/b", ("/a/b", False)),
    ],
)
def test_escaped_slashes(action: str, path: str, want: tuple[str | None, bool]) -> None:
    assert normalize_path_with(path, action, True) == want  # type: ignore[arg-type]


def test_merge_slashes_can_be_turned_off() -> None:
    assert normalize_path_with("/a//b/./c", "KeepUnchanged", False) == ("/a//b/c", False)
    assert normalize_path_with("/a//b", "KeepUnchanged", True) == ("/a/b", False)


def _rules(**headers: object) -> ClientRequestRules:
    return ClientRequestRules(None, ir.ClientHeaders(**headers))  # type: ignore[arg-type]


def test_underscores() -> None:
    headers = [(b"x_a", b"1"), (b"x-b", b"2")]
    assert _rules(with_underscores="RejectRequest").headers(headers)[1] == Refusal(400)
    assert _rules(with_underscores="DropHeader").headers(headers) == ([(b"x-b", b"2")], None)
    assert _rules(with_underscores="Allow").headers(headers) == (headers, None)


@pytest.mark.parametrize(
    ("action", "sent", "kept"),
    [("Generate", True, False), ("PreserveOrGenerate", True, True), ("Preserve", True, True)],
)
def test_request_id(action: str, sent: bool, kept: bool) -> None:
    headers = [(b"x-request-id", b"mine")] if sent else []
    got, _ = _rules(request_id=action).headers(headers)
    ids = [v for n, v in got if n == b"x-request-id"]
    assert len(ids) == 1
    assert (ids[0] == b"mine") is kept


def test_request_id_generated_or_removed() -> None:
    got, _ = _rules(request_id="PreserveOrGenerate").headers([])
    assert [len(v) for n, v in got if n == b"x-request-id"] == [36]
    assert _rules(request_id="Disable").headers([(b"x-request-id", b"a")]) == ([], None)
    assert _rules(request_id="Preserve").headers([]) == ([], None)


def test_redirect_keeps_the_query() -> None:
    rules = ClientRequestRules(ir.PathOptions(escaped_slashes="UnescapeAndRedirect"), None)
    assert rules.path("/a%2Fb", "q=1") == ("/a/b", Refusal(307, "/a/b?q=1"))


def test_fault_draws() -> None:
    fault = ir.FaultInjection(delay=0.5, delay_fraction=0.5, abort_status=503, abort_fraction=0.1)
    assert inject(fault, 0.4, 0.05).delay == 0.5
    assert inject(fault, 0.4, 0.05).status == 503
    assert inject(fault, 0.6, 0.5).delay == 0.0
    assert inject(fault, 0.6, 0.5).status == 0
    grpc = inject(ir.FaultInjection(abort_grpc_status=14), 0.0, 0.0)
    assert (grpc.status, grpc.answer_headers()[1]) == (200, (b"grpc-status", b"14"))


def test_strategic_merge_keys_compression_by_type() -> None:
    parent = {"compression": [{"type": "Gzip"}], "timeout": {"http": {"requestTimeout": "1s"}}}
    patch = {"compression": [{"type": "Zstd"}], "timeout": {"tcp": {"connectTimeout": "2s"}}}
    got = merge_specs("BackendTrafficPolicy", parent, patch, "StrategicMerge")
    assert got["compression"] == [{"type": "Gzip"}, {"type": "Zstd"}]
    assert got["timeout"] == {"http": {"requestTimeout": "1s"}, "tcp": {"connectTimeout": "2s"}}
    json = merge_specs("BackendTrafficPolicy", parent, patch, "JSONMerge")
    assert json["compression"] == [{"type": "Zstd"}]
    assert "timeout" not in merge_specs(
        "BackendTrafficPolicy", parent, {"timeout": None}, "JSONMerge"
    )


@pytest.mark.parametrize(
    ("text", "value"), [("32768", 32768), ("256Ki", 262144), ("20Mi", 20 << 20), ("1k", 1000)]
)
def test_quantity(text: str, value: int) -> None:
    assert Quantity.parse(text) == value


def test_quantity_refuses_fractions() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        Quantity.parse("1.5Gi")


def test_remove_on_match() -> None:
    matches = (
        ("Exact", "x-exact"),
        ("Prefix", "x-pre-"),
        ("Suffix", "-suf"),
        ("RegularExpression", "x-re-[0-9]+"),
    )
    rules = _rules(remove_on_match=matches)
    names = [b"x-exact", b"x-pre-a", b"a-suf", b"x-re-12", b"x-re-a", b"keep"]
    got, _ = rules.headers([(n, b"v") for n in names])
    assert [n for n, _ in got] == [b"x-re-a", b"keep"]
