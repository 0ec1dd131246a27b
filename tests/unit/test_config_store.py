"""The store: last good version per file, deletion, duplicates, warnings and generations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgegw.config import ConfigStore
from edgegw.config import store as store_module

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
spec:
  rules:
  - matches:
    - path:
        value: {path}
    backendRefs:
    - name: web
      port: 80
"""


def write(root: Path, name: str, text: str) -> None:
    """Write and make sure the (mtime, size, inode) stamp changes, as a real edit would."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def route_paths(store: ConfigStore) -> dict[str, str]:
    result = store.reload()
    return {
        r.metadata.name: r.spec.rules[0].matches[0].path.value for r in result.resources.http_routes
    }


def test_a_broken_file_keeps_its_last_good_version(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    assert route_paths(store) == {"app": "/v1"}

    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="no-slash"))
    result = store.reload()
    assert [r.spec.rules[0].matches[0].path.value for r in result.resources.http_routes] == ["/v1"]
    (error,) = result.errors
    assert (error.file, error.line, error.field) == (
        "app.yaml",
        9,
        "spec.rules[0].matches[0].path.value",
    )

    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v2"))
    result = store.reload()
    assert result.errors == ()
    assert result.resources.http_routes[0].spec.rules[0].matches[0].path.value == "/v2"


def test_unparsable_file_keeps_last_good_and_reports_yaml_line(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    store.reload()
    write(tmp_path, "app.yaml", "apiVersion: v1\nkind: [oops\n")
    result = store.reload()
    assert len(result.resources.http_routes) == 1
    assert [(e.file, e.line) for e in result.errors] == [("app.yaml", 3)]


def test_one_bad_document_holds_back_the_whole_file(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    text = ROUTE.format(name="a", path="/a") + "---\n" + ROUTE.format(name="b", path="bad")
    write(tmp_path, "two.yaml", text)
    result = store.reload()
    assert result.resources.http_routes == ()
    assert [e.line for e in result.errors] == [22]


def test_deleting_a_file_removes_its_resources(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "a.yaml", ROUTE.format(name="a", path="/a"))
    write(tmp_path, "b.yaml", ROUTE.format(name="b", path="/b"))
    assert set(route_paths(store)) == {"a", "b"}
    (tmp_path / "a.yaml").unlink()
    assert set(route_paths(store)) == {"b"}


def test_deleting_a_broken_file_clears_its_error_and_resources(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "a.yaml", ROUTE.format(name="a", path="/a"))
    store.reload()
    write(tmp_path, "a.yaml", "kind: [\n")
    assert store.reload().errors
    (tmp_path / "a.yaml").unlink()
    result = store.reload()
    assert result.errors == ()
    assert result.resources.http_routes == ()


def test_duplicate_resource_first_file_in_path_order_wins(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "b.yaml", ROUTE.format(name="app", path="/from-b"))
    write(tmp_path, "a/x.yaml", ROUTE.format(name="app", path="/from-a"))
    result = store.reload()
    assert [r.spec.rules[0].matches[0].path.value for r in result.resources.http_routes] == [
        "/from-a"
    ]
    (error,) = result.errors
    assert (error.file, error.line) == ("b.yaml", 1)
    assert "a/x.yaml:1" in error.message


def test_unknown_kinds_are_warnings_and_change_nothing(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    text = ROUTE.format(name="a", path="/a") + "---\napiVersion: apps/v1\nkind: Deployment\n"
    write(tmp_path, "mixed.yaml", text + "metadata: {name: d}\n")
    result = store.reload()
    assert result.errors == ()
    assert len(result.resources.http_routes) == 1
    (warning,) = result.warnings
    assert (warning.file, warning.line) == ("mixed.yaml", 14)
    assert "Deployment" in warning.message


def test_unknown_version_of_a_known_kind_is_a_warning(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "r.yaml", ROUTE.format(name="a", path="/a").replace("/v1", "/v9"))
    result = store.reload()
    assert result.resources.http_routes == ()
    assert "not served in gateway.networking.k8s.io/v9" in result.warnings[0].message


def test_generation_rises_only_when_content_changes(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    assert store.reload().resources.http_routes[0].metadata.generation == 1

    relabelled = ROUTE.format(name="app", path="/v1").replace(
        "  name: app\n", "  name: app\n  labels: {a: b}\n"
    )
    write(tmp_path, "app.yaml", relabelled)
    assert store.reload().resources.http_routes[0].metadata.generation == 1

    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v2"))
    assert store.reload().resources.http_routes[0].metadata.generation == 2
    assert store.reload().resources.http_routes[0].metadata.generation == 2


def test_first_seen_time_stands_in_for_creation_timestamp(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    first = store.reload().resources.http_routes[0].metadata.creation_timestamp
    assert first is not None
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v2"))
    assert store.reload().resources.http_routes[0].metadata.creation_timestamp == first


def test_generation_and_age_survive_a_restart(tmp_path: Path) -> None:
    config, state = tmp_path / "config", tmp_path / "state"
    write(config, "app.yaml", ROUTE.format(name="app", path="/v1"))
    store = ConfigStore(config, state)
    store.reload()
    write(config, "app.yaml", ROUTE.format(name="app", path="/v2"))
    before = store.reload().resources.http_routes[0].metadata
    assert before.generation == 2

    after = ConfigStore(config, state).reload().resources.http_routes[0].metadata
    assert (after.generation, after.creation_timestamp) == (2, before.creation_timestamp)
    saved = json.loads((state / "resources.json").read_text())
    assert saved["HTTPRoute/default/app"]["generation"] == 2


def test_corrupt_state_file_is_ignored(tmp_path: Path) -> None:
    config, state = tmp_path / "config", tmp_path / "state"
    state.mkdir()
    (state / "resources.json").write_text("{not json")
    write(config, "app.yaml", ROUTE.format(name="app", path="/v1"))
    assert ConfigStore(config, state).reload().resources.http_routes[0].metadata.generation == 1


def test_only_changed_files_are_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "a.yaml", ROUTE.format(name="a", path="/a"))
    write(tmp_path, "b.yaml", ROUTE.format(name="b", path="/b"))
    store.reload()
    read: list[str] = []
    real = store_module._load_file

    def counting(root: Path, name: str) -> Any:
        read.append(name)
        return real(root, name)

    monkeypatch.setattr(store_module, "_load_file", counting)
    assert len(store.reload().resources.http_routes) == 2
    assert read == []
    write(tmp_path, "b.yaml", ROUTE.format(name="b", path="/b2"))
    assert len(store.reload().resources.http_routes) == 2
    assert read == ["b.yaml"]
