"""Golden tests of ``translate()``: ``tests/golden/<case>.in.yaml`` → ``<case>.out.yaml``.

Each input is a multi-document YAML of resources, loaded the way
``edgegw run`` loads them. Two extras keep cases short: a string
``"@pki/NAME"`` is replaced by the file ``tests/golden/pki/NAME`` (PEM
material), and an optional document of ``kind: TranslateOptions`` sets
options (``poolAssignments``, ``defaultAddresses``, ``localAddresses``). The output holds every
status and the IR, with PEM bytes summarised and IR defaults left out.
Certificate validity is judged at 2025-01-01.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from edgegw import api
from edgegw.config.decode import decode
from edgegw.config.parse import parse
from edgegw.translate import PoolAssignment, TranslateOptions, translate

GOLDEN = Path(__file__).parent.parent / "golden"
NOW = 1735689600.0  # 2025-01-01T00:00:00Z
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))


def _inline_pki(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@pki/"):
        return (GOLDEN / "pki" / value.removeprefix("@pki/")).read_text()
    if isinstance(value, dict):
        return {k: _inline_pki(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline_pki(v) for v in value]
    return value


def _options(raw: dict[str, Any]) -> TranslateOptions:
    pools = {
        (p["namespace"], p["name"]): PoolAssignment(
            addresses=tuple(p.get("addresses", ())),
            pools=p.get("pools", {}),
            reason=p.get("reason") or "",
            message=p.get("message", ""),
        )
        for p in raw.get("poolAssignments", ())
    }
    defaults = tuple(raw.get("defaultAddresses", ("0.0.0.0",)))
    local = raw.get("localAddresses")
    return TranslateOptions(
        default_addresses=defaults,
        pool_assignments=pools or None,
        generation=1,
        now=NOW,
        local_addresses=None if local is None else frozenset(local),
    )


def load_case(name: str) -> tuple[api.Resources, TranslateOptions]:
    """Decode a case's resources as the loader does; generation 1 as after a first load."""
    text = (GOLDEN / f"{name}.in.yaml").read_text()
    objects: list[api.Object] = []
    options = _options({})
    for doc in parse(f"{name}.in.yaml", text):
        if doc.raw.get("kind") == "TranslateOptions":
            options = _options(doc.raw)
            continue
        obj = decode(type(doc)(file=doc.file, line=doc.line, raw=_inline_pki(doc.raw)))
        meta = msgspec.structs.replace(obj.metadata, generation=obj.metadata.generation or 1)
        objects.append(msgspec.structs.replace(obj, metadata=meta))
    return api.build_resources(objects), options


def _pem_summary(data: bytes) -> str:
    blocks = [line[11:-5] for line in data.decode().splitlines() if line.startswith("-----BEGIN ")]
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"<PEM {', '.join(blocks)}; sha256 {digest}>"


def plain(value: Any) -> Any:
    """IR → YAML-ready data: defaults dropped, tags kept, PEM bytes summarised."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        tag = type(value).__struct_config__.tag
        if isinstance(tag, str):
            out["filter"] = tag
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            default = field.default
            if default is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
                default = field.default_factory()
            if default is not msgspec.NODEFAULT and item == default:
                continue
            out[field.name] = plain(item)
        return out
    if isinstance(value, bytes):
        return _pem_summary(value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def render(name: str) -> str:
    resources, options = load_case(name)
    result = translate(resources, options)
    statuses = [
        {
            "kind": s.kind,
            "name": f"{s.namespace}/{s.name}" if s.namespace else s.name,
            "status": s.status,
        }
        for s in result.statuses
    ]
    body = {"statuses": statuses, "ir": plain(result.model)}
    return yaml.safe_dump(body, sort_keys=False, width=100, allow_unicode=True)


def _updating(config: pytest.Config) -> bool:
    flag = bool(config.getoption("update_golden", default=False))
    return flag or os.environ.get("EDGEGW_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, request: pytest.FixtureRequest) -> None:
    got = render(case)
    out = GOLDEN / f"{case}.out.yaml"
    if _updating(request.config):
        out.write_text(got)
    assert out.exists(), f"no {out.name}; run with --update-golden and review it"
    assert got == out.read_text()


def test_translate_is_deterministic() -> None:
    """Same input, same output: the data plane relies on it to skip no-op reloads."""
    for case in CASES:
        resources, options = load_case(case)
        assert translate(resources, options) == translate(resources, options)
