"""The L2 speaker sidecar: announces the gateway's addresses on the LAN with ARP and NDP.

`announcer` decides, `speaker` answers on the wire, `host` makes addresses local, `sources`
reads the gateway and the config directory, and `run` wires them together.
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    """``edgegw l2``; imported lazily so ``edgegw.l2.announcer`` stays cheap to import."""
    from edgegw.l2.run import main as run_main

    return run_main(args)
