"""``edgegw check``: validate a config directory without serving, like ``nginx -t``.

It runs the same loader and translator as ``edgegw run`` (so "check passes"
means "run would accept it") and fails when anything is invalid: a file that
does not parse or validate, or a resource whose conditions say it is not
accepted or its references do not resolve.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgegw import addresses, api, ir
from edgegw.admin.client import render
from edgegw.certificates.challenges import Challenges
from edgegw.certificates.manager import CertificateManager
from edgegw.config.store import ConfigStore
from edgegw.net.localaddr import local_addresses, static_addresses
from edgegw.status import StatusBook
from edgegw.translate import TranslateOptions, translate
from edgegw.translate.certificates import plan_certificates

FAILING = {("Accepted", "False"), ("ResolvedRefs", "False"), ("Programmed", "False")}


def build_document(config_dir: Path, controller_name: str) -> dict[str, Any]:
    """The status document ``edgegw run`` would publish for this directory."""
    loaded = ConfigStore(config_dir, None).reload()
    resources, certificates = _with_certificates(loaded.resources)
    assignments = addresses.assign(resources, {}, controller_name)
    result = translate(
        resources,
        TranslateOptions(
            controller_name=controller_name,
            pool_assignments=assignments,
            local_addresses=local_addresses(static_addresses(loaded.resources.gateways)),
            generation=1,
            now=time.time(),
        ),
    )
    book = StatusBook()
    statuses = (*result.statuses, *certificates.statuses(time.time()))
    book.publish(1, loaded, statuses, ir.Model(), {})
    return book.document


def _with_certificates(resources: api.Resources) -> tuple[api.Resources, CertificateManager]:
    """Stand-ins for the Secrets edgegw would issue, so their listeners check as valid.

    A few rounds, because an issued certificate can be the CA of another
    issuer (cert-manager's selfSigned → CA → ca Issuer bootstrap).
    """
    manager = CertificateManager(None, Challenges(), on_issued=lambda: None)
    with_certs = resources
    for _ in range(3):
        manager.update(plan_certificates(with_certs))
        with_certs = manager.with_temporaries(resources, every=True)
    return with_certs, manager


def failures(document: dict[str, Any]) -> Iterator[str]:
    """One line per reason this document is not clean."""
    for error in document["errors"]:
        field = f"{error['field']}: " if error.get("field") else ""
        yield f"{error['file']}:{error['line']}: {field}{error['message']}"
    for res in document["resources"]:
        name = f"{res['kind']} {res['metadata'].get('namespace', '')}/{res['metadata']['name']}"
        for where, cond in _conditions(res["status"], ""):
            if (cond.get("type"), cond.get("status")) in FAILING:
                state = f"{cond['type']}={cond['status']} {cond.get('reason', '')}"
                yield f"{name}{where}: {state}: {cond.get('message', '')}"


def _conditions(node: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for cond in node.get("conditions", ()):
        yield where, cond
    for listener in node.get("listeners", ()):
        yield from _conditions(listener, f"{where} listener {listener.get('name')}")
    for parent in [*node.get("parents", ()), *node.get("ancestors", ())]:
        ref = parent.get("parentRef") or parent.get("ancestorRef") or {}
        yield from _conditions(
            parent, f"{where} parent {ref.get('namespace', '')}/{ref.get('name', '')}"
        )


def check(config_dir: Path, *, controller_name: str, output: str = "table") -> int:
    """Print every resource with its conditions and every error; 0 when nothing is invalid."""
    if not config_dir.is_dir():
        print(f"edgegw check: {config_dir} is not a directory", file=sys.stderr)
        return 1
    document = build_document(config_dir, controller_name)
    print(render(document, output), end="")
    for warning in document.get("warnings", ()):
        where = f"{warning['file']}:{warning['line']}" if warning["line"] else warning["file"]
        print(f"warning: {where}: {warning['message']}", file=sys.stderr)
    problems = list(failures(document))
    for line in problems:
        print(f"invalid: {line}", file=sys.stderr)
    if problems:
        print(f"edgegw check: {len(problems)} problem(s) in {config_dir}", file=sys.stderr)
        return 1
    print(f"edgegw check: {config_dir} is valid", file=sys.stderr)
    return 0
