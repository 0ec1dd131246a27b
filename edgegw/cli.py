"""The ``edgegw`` command line: one subcommand per job, each handing off to one function.

Parsing lives here and nowhere else, so every other module takes typed
arguments and can be called from tests without going through argv.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgegw import __version__
from edgegw.cluster.options import add_arguments as cluster_arguments

DEFAULT_ADMIN = "127.0.0.1:9901"
DEFAULT_CONTROLLER = "edgegw.io/gateway-controller"


def _default_state_dir() -> str:
    return os.environ.get("STATE_DIRECTORY", "/var/lib/edgegw").split(":")[0]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, as CONTRACT.md fixes it."""
    parser = argparse.ArgumentParser(prog="edgegw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the Gateway API config in DIR")
    run.add_argument("-c", "--config", required=True, type=Path, metavar="DIR")
    run.add_argument("--admin", default=DEFAULT_ADMIN, help="HOST:PORT or unix:/path")
    run.add_argument("--state-dir", default=None, type=Path)
    run.add_argument("--default-address", action="append", default=None, metavar="IP")
    run.add_argument("--controller-name", default=DEFAULT_CONTROLLER)
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--log-level", default="info")
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--drain-timeout", type=float, default=30.0)
    cluster_arguments(run)

    check = sub.add_parser("check", help="validate DIR without serving")
    check.add_argument("-c", "--config", required=True, type=Path, metavar="DIR")
    check.add_argument("--controller-name", default=DEFAULT_CONTROLLER)
    check.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")

    status = sub.add_parser("status", help="ask a running gateway")
    status.add_argument("--admin", default=DEFAULT_ADMIN)
    status.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")

    l2 = sub.add_parser("l2", help="announce the gateway's addresses with ARP")
    l2.add_argument("-c", "--config", required=True, type=Path, metavar="DIR")
    l2.add_argument("--interface", action="append", required=True, metavar="IFACE")
    l2.add_argument("--admin", default=DEFAULT_ADMIN)
    l2.add_argument("--log-level", default="info")
    cluster_arguments(l2)

    echo = sub.add_parser("echo", help="a small echo backend")
    echo.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    echo.add_argument("--name", default=None)
    echo.add_argument("--namespace", default="")

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgegw`` executable; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command: str = args.command
    if command == "version":
        from edgegw.proto.compiled import summary

        print(f"edgegw {__version__}")
        print(summary("edgegw"))
        return 0
    if command == "run":
        from edgegw.gateway import RunOptions, run

        if args.state_dir is None:
            args.state_dir = Path(_default_state_dir())
        try:
            options = RunOptions.from_args(args)
        except ValueError as exc:
            print(f"edgegw run: {exc}", file=sys.stderr)
            return 2
        return run(options)
    if command == "check":
        from edgegw.check import check

        return check(args.config, controller_name=args.controller_name, output=args.output)
    if command == "status":
        from edgegw.admin.client import print_status

        return print_status(args.admin, output=args.output)
    if command == "l2":
        from edgegw.l2 import main as l2_main

        return l2_main(args)
    if command == "echo":
        from edgegw.echo import main as echo_main

        return echo_main(args.listen, name=args.name, namespace=args.namespace)
    raise AssertionError(command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
