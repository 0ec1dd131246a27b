"""Limits a config file must keep before anything is built from it.

Theory of operation
-------------------
A YAML alias makes a node stand for the whole subtree it names, so a 1 KB
file of aliases nested nine deep ("billion laughs") stands for 10^9 nodes.
PyYAML's constructor shares aliased objects, so building the value is cheap,
but everything after it walks the value as a tree: the line index, msgspec's
decoding, the content digest. That grew the gateway past 1 GB in 15 s.

So before composing a single node, ``check_bounds`` runs the parser's event
stream once (libyaml: constant memory whatever the input) and counts what
the document would expand to: a scalar is one node, a collection one plus its
children, an alias the size its anchor had when it was defined. A file fails
as soon as a running count passes a limit, so the pass itself is bounded by
the file's size. An alias to an anchor still open (a recursive structure) or
never defined is refused too: no resource is self-referential.

The limits are far above any real resource (a Kubernetes object holds a few
hundred nodes; an EndpointSlice of 1,000 endpoints about 6,000) and far below
what hurts: 100,000 nodes compose in about 0.1 s and 40 MB.
"""

from __future__ import annotations

import yaml

from edgegw.errors import ConfigError

MAX_FILE_BYTES = 16 << 20  # a config file larger than this is an error, not read
MAX_DOCUMENTS = 10_000  # documents (and ``kind: List`` items) in one file
MAX_ALIAS_NODES = 100_000  # nodes that aliases stand for, in one file
MAX_DOCUMENT_NODES = 100_000  # nodes of one document, aliases expanded
MAX_DEPTH = 100  # nesting of one document


class _Counter:
    """The running counts of one file's event stream."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.documents = 0
        self.alias_nodes = 0
        self.document_nodes = 0
        self.anchors: dict[str, int] = {}  # anchor → its node's expanded size
        self.open: list[tuple[int, str | None]] = []  # (nodes before it, anchor) per collection

    def fail(self, event: yaml.Event, message: str) -> ConfigError:
        mark = event.start_mark
        return ConfigError(self.file, 0 if mark is None else int(mark.line) + 1, "", message)

    def document(self, event: yaml.Event) -> None:
        self.documents += 1
        if self.documents > MAX_DOCUMENTS:
            raise self.fail(event, f"more than {MAX_DOCUMENTS:,} documents in one file")
        self.document_nodes = 0
        self.anchors.clear()  # anchors do not cross documents

    def add(self, event: yaml.Event, nodes: int) -> None:
        self.document_nodes += nodes
        if self.document_nodes > MAX_DOCUMENT_NODES:
            raise self.fail(event, f"a document of more than {MAX_DOCUMENT_NODES:,} nodes")

    def start(self, event: yaml.CollectionStartEvent) -> None:
        if len(self.open) >= MAX_DEPTH:
            raise self.fail(event, f"nested more than {MAX_DEPTH} levels deep")
        self.open.append((self.document_nodes, event.anchor))
        self.add(event, 1)

    def end(self) -> None:
        before, anchor = self.open.pop()
        if anchor is not None:
            self.anchors[anchor] = self.document_nodes - before

    def scalar(self, event: yaml.ScalarEvent) -> None:
        if event.anchor is not None:
            self.anchors[event.anchor] = 1
        self.add(event, 1)

    def alias(self, event: yaml.AliasEvent) -> None:
        size = self.anchors.get(event.anchor or "")
        if size is None:
            raise self.fail(event, f"alias *{event.anchor} names no complete anchor before it")
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise self.fail(event, f"YAML aliases expand past {MAX_ALIAS_NODES:,} nodes")
        self.add(event, size)


def check_bounds(file: str, text: str, loader: type[yaml.SafeLoader]) -> None:
    """Refuse ``text`` before it is composed if it breaks a limit (see the module docstring).

    Args:
        file: the path relative to the config directory, for errors.
        text: the file's content.
        loader: the Loader class whose parser to run.

    Raises:
        ConfigError: a limit is broken (with the line where it was).
        yaml.YAMLError: the text is not YAML; the caller reports it.
    """
    counter = _Counter(file)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.ScalarEvent):
            counter.scalar(event)
        elif isinstance(event, yaml.CollectionStartEvent):
            counter.start(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            counter.end()
        elif isinstance(event, yaml.AliasEvent):
            counter.alias(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            counter.document(event)
