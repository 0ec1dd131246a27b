"""``--cluster``, ``--node-name``, ``--lease-ttl`` and the TLS files, for ``run`` and ``l2``."""

from __future__ import annotations

import argparse
import socket

import msgspec

from edgegw.net.etcd import EtcdClient, TLSFiles, parse_cluster

MIN_TTL = 1
"""etcd's own minimum is 1.5 election timeouts rounded up: 2 s with its default timings, 1 s
with ``--election-timeout 500`` or less. A shorter TTL than etcd grants is raised to what it
grants (`Session` warns), never unsafe."""


class ClusterOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Where etcd is and who this node is."""

    endpoints: tuple[str, ...]
    node: str
    lease_ttl: int = 2
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClusterOptions | None:
        """None without ``--cluster``.

        Raises:
            ValueError: a malformed ``--cluster``, a TTL under etcd's minimum, or TLS files
                without ``etcds://``.
        """
        value = getattr(args, "cluster", None)
        if not value:
            return None
        endpoints, tls = parse_cluster(value)
        ttl = int(args.lease_ttl)
        if ttl < MIN_TTL:
            raise ValueError(f"--lease-ttl {ttl}: the minimum is {MIN_TTL} s")
        files = (args.cluster_ca, args.cluster_cert, args.cluster_key)
        if any(files) and not tls:
            raise ValueError("--cluster-ca/--cluster-cert/--cluster-key need etcds://")
        if bool(args.cluster_cert) != bool(args.cluster_key):
            raise ValueError("--cluster-cert and --cluster-key go together")
        node = args.node_name or socket.gethostname()
        return cls(endpoints=tuple(endpoints), node=node, lease_ttl=ttl,
                   ca=args.cluster_ca, cert=args.cluster_cert, key=args.cluster_key)  # fmt: skip

    def client(self) -> EtcdClient:
        """A client for these endpoints (enter it with ``async with``)."""
        secure = self.endpoints[0].startswith("https")
        tls = TLSFiles(self.ca, self.cert, self.key) if secure else None
        return EtcdClient(self.endpoints, tls, timeout=max(1.0, self.lease_ttl / 2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The cluster flags, shared by ``edgegw run`` and ``edgegw l2``."""
    parser.add_argument("--cluster", default=None, metavar="etcd://HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--cluster-ca", default=None, metavar="FILE")
    parser.add_argument("--cluster-cert", default=None, metavar="FILE")
    parser.add_argument("--cluster-key", default=None, metavar="FILE")
    parser.add_argument("--node-name", default=None, help="default: the hostname")
    parser.add_argument("--lease-ttl", type=int, default=2, metavar="S")
