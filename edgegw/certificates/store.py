"""``STATE_DIR/certificates/``: issued certificates, their keys and ACME accounts, on disk.

Layout (every file 0600, the directories 0700, each file replaced atomically)::

    certificates/<namespace>/<secret>.crt   the chain, leaf first
    certificates/<namespace>/<secret>.key   its private key
    certificates/<namespace>/<secret>.json  what was asked for (a digest) and when it expires
    certificates/accounts/<digest>.json     an ACME account: server, key, account URL
    certificates/http01/<token>             a pending HTTP-01 answer, read by every worker
    certificates/.order.lock                held by the one process that orders

A certificate is loaded at start and served without a new order while it
matches what is asked for (``Issued.request``) and is not due for renewal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import msgspec

from edgegw.certs import CertificateError, KeyPair, load_key_pair
from edgegw.translate.certificates import CertificatePlan

log = logging.getLogger("edgegw.certificates")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class Issued(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about a certificate on disk, besides its PEM."""

    request: str  # request_digest of the plan it was issued for
    issuer: str
    not_before: float
    not_after: float


class Account(msgspec.Struct, frozen=True, kw_only=True):
    server: str
    key_pem: str
    url: str = ""


def request_digest(plan: CertificatePlan) -> str:
    """What, when changed, needs a new certificate (not the renewal timing)."""
    fields = (
        plan.dns_names, plan.common_name, plan.issuer, plan.key_algorithm, plan.key_size,
        plan.is_ca, plan.duration,
    )  # fmt: skip
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()[:32]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 so that readers see the old or the new file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CertificateStore:
    """The files under one ``certificates/`` directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _base(self, namespace: str, secret: str) -> Path:
        if not (_NAME.match(namespace) and _NAME.match(secret)):
            raise ValueError(f"unusable name {namespace}/{secret}")
        return self.root / namespace / secret

    def save(self, namespace: str, secret: str, chain: bytes, key: bytes, info: Issued) -> None:
        base = self._base(namespace, secret)
        write_private(base.with_suffix(".key"), key)
        write_private(base.with_suffix(".crt"), chain)
        write_private(base.with_suffix(".json"), msgspec.json.encode(info))

    def load(self, namespace: str, secret: str) -> tuple[KeyPair, Issued] | None:
        """The certificate kept for ``namespace/secret``, or None (missing or unusable)."""
        base = self._base(namespace, secret)
        try:
            info = msgspec.json.decode(base.with_suffix(".json").read_bytes(), type=Issued)
            pair = load_key_pair(
                base.with_suffix(".crt").read_bytes(), base.with_suffix(".key").read_bytes()
            )
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError, CertificateError) as exc:
            log.warning("ignoring unusable certificate %s: %s", base, exc)
            return None
        return pair, info

    def load_all(self) -> dict[tuple[str, str], KeyPair]:
        """Every usable certificate on disk, by (namespace, Secret name)."""
        found: dict[tuple[str, str], KeyPair] = {}
        if not self.root.is_dir():
            return found
        for ns_dir in sorted(self.root.iterdir()):
            if not ns_dir.is_dir() or not _NAME.match(ns_dir.name):
                continue
            for crt in sorted(ns_dir.glob("*.crt")):
                if not _NAME.match(crt.stem):
                    continue
                loaded = self.load(ns_dir.name, crt.stem)
                if loaded is not None:
                    found[(ns_dir.name, crt.stem)] = loaded[0]
        return found

    # --- ACME accounts --------------------------------------------------------------------

    def _account_path(self, issuer: str, server: str) -> Path:
        digest = hashlib.sha256(f"{issuer}\0{server}".encode()).hexdigest()[:24]
        return self.root / "accounts" / f"{digest}.json"

    def load_account(self, issuer: str, server: str) -> Account | None:
        try:
            data = self._account_path(issuer, server).read_bytes()
            return msgspec.json.decode(data, type=Account)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable ACME account of %s: %s", issuer, exc)
            return None

    def save_account(self, issuer: str, account: Account) -> None:
        write_private(self._account_path(issuer, account.server), msgspec.json.encode(account))

    # --- HTTP-01 answers shared with other workers ----------------------------------------

    def http01_path(self, token: str) -> Path | None:
        return self.root / "http01" / token if _TOKEN.match(token) else None
