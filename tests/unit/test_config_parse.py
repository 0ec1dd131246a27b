"""Files → documents: multi-document YAML, kind: List, JSON, and lines for every field."""

from __future__ import annotations

import pytest

from edgegw.config import parse
from edgegw.errors import ConfigError

MULTI = """\
# a comment
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
data:
  when: 2024-01-01
"""


def test_multi_document_yaml_skips_empty_documents_and_keeps_start_lines() -> None:
    docs = parse("m.yaml", MULTI)
    assert [d.raw["metadata"]["name"] for d in docs] == ["a", "b"]
    assert [d.line for d in docs] == [2, 7]


def test_line_of_finds_the_field_or_its_closest_ancestor() -> None:
    doc = parse("m.yaml", MULTI)[1]
    assert doc.line_of(["metadata", "name"]) == 10
    assert doc.line_of(["data", "when"]) == 12
    assert doc.line_of(["data", "missing"]) == 11
    assert doc.line_of(["spec", "rules", 0]) == 7


def test_unquoted_dates_stay_strings_as_in_kubernetes() -> None:
    assert parse("m.yaml", MULTI)[1].raw["data"]["when"] == "2024-01-01"


def test_kind_list_is_split_into_items_with_their_own_lines() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: one}
- apiVersion: v1
  kind: Namespace
  metadata:
    name: two
"""
    docs = parse("list.yaml", text)
    assert [d.raw["metadata"]["name"] for d in docs] == ["one", "two"]
    assert [d.line for d in docs] == [4, 7]
    assert docs[1].line_of(["metadata", "name"]) == 10


def test_json_documents_and_lists() -> None:
    text = (
        '{\n  "apiVersion": "v1",\n  "kind": "List",\n  "items": [\n'
        '    {"apiVersion": "v1", "kind": "Namespace",\n     "metadata": {"name": "j"}}\n  ]\n}\n'
    )
    (doc,) = parse("ns.json", text)
    assert doc.raw["metadata"]["name"] == "j"
    assert doc.line == 5
    assert doc.line_of(["metadata", "name"]) == 6


def test_json_with_tabs_falls_back_to_the_json_parser() -> None:
    (doc,) = parse("t.json", '{\n\t"kind": "Namespace",\n\t"apiVersion": "v1"}\n')
    assert doc.raw["kind"] == "Namespace"


def test_unparsable_yaml_reports_the_line_of_the_problem() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: [x\n"
    with pytest.raises(ConfigError) as caught:
        parse("bad.yaml", text)
    assert caught.value.file == "bad.yaml"
    assert caught.value.line == 6
    assert caught.value.message.startswith("invalid YAML")


def test_unparsable_json_reports_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("bad.json", '{\n  "a": 1,\n  "b": [1, 2\n}\n')
    assert caught.value.line in (3, 4)
