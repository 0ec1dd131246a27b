"""Which files are config: YAML and JSON, recursively, minus hidden files and editor leftovers."""

from __future__ import annotations

from pathlib import Path

from edgegw.config import discover


def test_discover_finds_config_files_and_skips_the_rest(tmp_path: Path) -> None:
    for name in (
        "a.yaml",
        "b.yml",
        "c.json",
        "routes/d.yaml",
        "routes/deep/e.yaml",
        "notes.txt",
        "a.yaml~",
        ".a.yaml.swp",
        "routes/.#d.yaml",
        ".hidden.yaml",
        ".git/config.yaml",
        "routes/.cache/x.yaml",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert discover(tmp_path) == [
        "a.yaml",
        "b.yml",
        "c.json",
        "routes/d.yaml",
        "routes/deep/e.yaml",
    ]


def test_missing_directory_has_no_files(tmp_path: Path) -> None:
    assert discover(tmp_path / "nope") == []


def test_symlink_loops_do_not_hang(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.yaml").write_text("{}")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    assert "sub/r.yaml" in discover(tmp_path)
