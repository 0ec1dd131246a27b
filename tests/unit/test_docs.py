"""The reference in docs/ names everything a user can type or scrape: each CLI flag (from the
argparse parser), each metric (from the observer's registry) and each config kind."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from edgegw.cli import build_parser
from edgegw.config.decode import KINDS
from edgegw.observe import Observer

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("edgegw has no subcommands")


def _section(text: str, command: str) -> str:
    """The part of cli.md under ``## `edgegw COMMAND` ``, up to the next such heading."""
    match = re.search(rf"^## `edgegw {command}`$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/cli.md has no section for edgegw {command}"
    return match.group(1)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_flag_of_every_subcommand_is_in_cli_md(command: str) -> None:
    section = _section((DOCS / "cli.md").read_text(), command)
    flags = [
        flag
        for action in _subcommands()[command]._actions
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    ]
    missing = [flag for flag in flags if f"`{flag}" not in section]
    assert not missing, f"edgegw {command}: {missing} not documented in docs/cli.md"


def test_every_metric_is_in_metrics_md() -> None:
    text = (DOCS / "metrics.md").read_text()
    names = [metric.name for metric in Observer().registry.metrics]
    assert len(names) > 10
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"not documented in docs/metrics.md: {missing}"


def test_every_metric_named_in_the_code_is_in_metrics_md() -> None:
    """Families registered outside the Observer (the certificate gauges) count too."""
    text = (DOCS / "metrics.md").read_text()
    source = "".join(p.read_text() for p in (ROOT / "edgegw").rglob("*.py"))
    registered = re.findall(
        r'(?:Counter|Gauge|Histogram)\(\s*"(edgegw_\w+)"|"(?:counter|gauge|histogram)",\s*"(edgegw_\w+)"',
        source,
    )
    names = {a or b for a, b in registered}
    assert {metric.name for metric in Observer().registry.metrics} <= names
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"not documented in docs/metrics.md: {missing}"


def test_every_metric_label_is_in_its_row() -> None:
    rows = {
        row.split("|")[1].strip(" `"): row
        for row in (DOCS / "metrics.md").read_text().splitlines()
        if row.startswith("| `edgegw_")
    }
    for metric in Observer().registry.metrics:
        for label in metric.label_names:
            assert f"`{label}`" in rows[metric.name], f"{metric.name}: label {label} undocumented"


def test_every_kind_read_is_in_config_md() -> None:
    text = (DOCS / "config.md").read_text()
    missing = [kind for _group, kind in KINDS if kind not in text]
    assert not missing, f"not documented in docs/config.md: {missing}"


def test_readme_points_into_docs_not_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme
    for page in re.findall(r"\(docs/([\w.-]+\.md)", readme):
        assert (DOCS / page).is_file(), page
    assert "docs/" in readme
