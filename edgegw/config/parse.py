"""Text of a config file → documents, each with an index from field path to line.

Theory of operation
-------------------
Users fix errors by line number, but msgspec reports a path
(``$.spec.rules[0].matches[1].path.value``), and PyYAML's plain values forget
where they came from. So each document is read twice from one parse: PyYAML
*composes* it into nodes, which keep their marks, and *constructs* the plain
value from those nodes. Walking the nodes gives ``Document.lines``, a map from
path tuples (``("spec", "rules", 0)``) to 1-based lines; ``line_of`` looks up
the longest known prefix of a path, so an error about a field the user did not
write (a missing required field) points at its parent.

Timestamps are not resolved: Kubernetes reads YAML as JSON, where an unquoted
``2024-01-01`` is a string, and so does edgegw. ``kind: List`` documents (the
output of ``kubectl get -o yaml``) are split into their items, each with its
own index and line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from edgegw.config.bounds import MAX_DEPTH, MAX_DOCUMENTS, check_bounds
from edgegw.errors import ConfigError

Path = tuple[str | int, ...]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader without the timestamp resolver (see module docstring)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Document:
    """One resource as written: its plain value and where each of its fields is."""

    file: str
    line: int
    raw: Any
    lines: Mapping[Path, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its closest written ancestor."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line:
                return line
        return self.line


def parse(file: str, text: str) -> list[Document]:
    """Split a file's text into documents.

    Args:
        file: the path relative to the config directory, for errors.
        text: the file's content.

    Returns:
        One Document per resource; empty documents are dropped.

    Raises:
        ConfigError: the text is not valid YAML (or JSON), with the line of the problem, or it
            breaks a limit of ``bounds`` (checked before anything is built).
    """
    try:
        check_bounds(file, text, _Loader)
        documents = _parse_yaml(file, text)
    except yaml.YAMLError as exc:
        if not file.endswith(".json"):
            raise ConfigError(
                file, _error_line(exc), "", f"invalid YAML: {_describe(exc)}"
            ) from None
        documents = _parse_json(file, text)
    if len(documents) > MAX_DOCUMENTS:
        raise ConfigError(file, 0, "", f"more than {MAX_DOCUMENTS:,} resources in one file")
    return documents


def _parse_yaml(file: str, text: str) -> list[Document]:
    documents: list[Document] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            documents.extend(_split(file, node, loader.construct_document(node)))
    finally:
        loader.dispose()
    return documents


def _parse_json(file: str, text: str) -> list[Document]:
    """Fallback for JSON PyYAML rejects (tabs, say): lines are then only the document's."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(file, exc.lineno, "", f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(file, 0, "", f"nested more than {MAX_DEPTH} levels deep") from None
    if _is_list(value) and isinstance(value["items"], list):
        return [Document(file, 1, item) for item in value["items"]]
    return [Document(file, 1, value)]


def _is_list(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") == "List" and "items" in value


def _split(file: str, node: yaml.Node, value: Any) -> list[Document]:
    """A document, or the items of a ``kind: List`` document."""
    if value is None:
        return []
    if not _is_list(value) or not isinstance(value["items"], list):
        return [Document(file, _line(node), value, _index(node))]
    items_node = _child(node, "items")
    if not isinstance(items_node, yaml.SequenceNode):
        return []
    return [
        Document(file, _line(item_node), item, _index(item_node))
        for item_node, item in zip(items_node.value, value["items"], strict=False)
    ]


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _index(root: yaml.Node) -> dict[Path, int]:
    """Map every path in the document to the line where it is written."""
    lines: dict[Path, int] = {(): _line(root)}
    stack: list[tuple[Path, yaml.Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if len(path) > 64:  # deeper than any real resource: an alias loop
            continue
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                lines[child] = _line(key_node)
                stack.append((child, value_node))
        elif isinstance(node, yaml.SequenceNode):
            for i, item_node in enumerate(node.value):
                child = (*path, i)
                lines[child] = _line(item_node)
                stack.append((child, item_node))
    return lines


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _error_line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return int(mark.line) + 1 if mark is not None else 0


def _describe(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [exc.context, exc.problem]
        return ", ".join(p for p in parts if p) or "syntax error"
    return str(exc)
