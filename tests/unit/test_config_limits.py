"""Limits of the config directory: sizes, documents, aliases, and files that are not files."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from edgegw.config import ConfigStore, parse
from edgegw.config.bounds import MAX_FILE_BYTES
from edgegw.errors import ConfigError
from tests.unit.test_config_store import ROUTE, route_paths, write


def billion_laughs(depth: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_before_it_is_built() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse("laughs.yaml", billion_laughs())
    assert time.monotonic() - started < 2
    assert (caught.value.file, caught.value.line) == ("laughs.yaml", 6)
    assert "aliases expand past 100,000 nodes" in caught.value.message


def test_aliases_below_the_limit_are_read() -> None:
    (doc,) = parse("ok.yaml", billion_laughs(depth=3))  # 9^4 nodes through aliases
    assert len(doc.raw["a3"]) == 9


def test_recursive_and_unknown_aliases_are_errors() -> None:
    for text in ("a: &a [1, *a]\n", "a: *nothing\n", "---\na: &x 1\n---\nb: *x\n"):
        with pytest.raises(ConfigError, match="names no complete anchor"):
            parse("r.yaml", text)


def test_deep_nesting_and_huge_documents_are_errors() -> None:
    with pytest.raises(ConfigError, match="nested more than 100 levels"):
        parse("deep.yaml", "a: " + "[" * 500 + "]" * 500)
    with pytest.raises(ConfigError, match="deep"):
        parse("deep.json", "{\t" + '"a": [' * 5000 + "]" * 5000 + "}")
    with pytest.raises(ConfigError, match="more than 100,000 nodes"):
        parse("big.yaml", "[" + "1, " * 100_001 + "]")


def test_documents_per_file_are_bounded() -> None:
    assert len(parse("many.yaml", "---\n{a: 1}\n" * 10_000)) == 10_000
    with pytest.raises(ConfigError, match="more than 10,000 documents") as caught:
        parse("many.yaml", "---\n{a: 1}\n" * 10_001)
    assert caught.value.line == 20_001
    items = "kind: List\nitems:\n" + "- {a: 1}\n" * 10_001
    with pytest.raises(ConfigError, match="more than 10,000 resources"):
        parse("list.yaml", items)


def test_a_file_over_16_mib_is_an_error_and_its_last_good_version_stays(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    assert route_paths(store) == {"app": "/v1"}
    padding = "#" * 1023 + "\n"
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v2") + padding * (16 << 10))
    assert (tmp_path / "app.yaml").stat().st_size > MAX_FILE_BYTES
    result = store.reload()
    assert [r.metadata.name for r in result.resources.http_routes] == ["app"]
    assert [(e.file, e.message) for e in result.errors] == [
        ("app.yaml", "larger than 16 MiB; not read")
    ]
    assert result.resources.http_routes[0].spec.rules[0].matches[0].path.value == "/v1"


def test_only_regular_files_are_read_the_rest_are_warnings(tmp_path: Path) -> None:
    write(tmp_path, "app.yaml", ROUTE.format(name="app", path="/v1"))
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "loop1.yaml").symlink_to(tmp_path / "loop2.yaml")
    (tmp_path / "loop2.yaml").symlink_to(tmp_path / "loop1.yaml")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "app.yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.yaml"))
        results = []
        reader = threading.Thread(target=lambda: results.append(ConfigStore(tmp_path).reload()))
        reader.start()
        reader.join(10)
    assert results, "the loader blocked"
    (result,) = results
    assert [r.metadata.name for r in result.resources.http_routes] == ["app"]  # link: duplicate
    assert {(w.file, w.message) for w in result.warnings} == {
        ("dangling.yaml", "a dangling symlink; skipped"),
        ("fifo.yaml", "a FIFO, not a regular file; skipped"),
        ("loop1.yaml", "a symlink loop; skipped"),
        ("loop2.yaml", "a symlink loop; skipped"),
        ("sock.yaml", "a socket, not a regular file; skipped"),
        ("sub/up", "a symlink loop (directory already read); skipped"),
    }
