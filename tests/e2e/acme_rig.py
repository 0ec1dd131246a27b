"""A real ACME server for the tests: Debian's pebble, its DNS (pebble-challtestsrv), and BIND.

Everything listens on free loopback ports and lives in the test's tmp_path.
pebble's validation authority dials ``http_port``/``tls_port`` on whatever
address DNS gives it (challtestsrv answers 127.0.0.1 for every name, or
BIND for the DNS-01 test): the tests point them at the gateway's listeners.
``PEBBLE_VA_NOSLEEP`` removes pebble's random validation delay; its 5%
nonce rejections stay on, so the client's badNonce retry is exercised.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.e2e.conftest import Process, accepts, wait_for
from tests.ports import free_port


@dataclass
class Pebble:
    """A running pebble; ``ca_bundle`` is what an Issuer's ``caBundle`` needs."""

    directory: str
    management: int
    ca_pem: bytes
    processes: list[Process]

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()

    def root_pem(self) -> bytes:
        """The root that signs issued certificates (pebble makes a new one each start)."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        url = f"https://127.0.0.1:{self.management}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return bytes(response.read())

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_pebble(
    tmp: Path,
    *,
    http_port: int,
    tls_port: int,
    validity: int = 3600,
    dns: str | None = None,
    eab: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> Pebble:
    """Start pebble (and challtestsrv as its DNS unless ``dns`` names another server).

    challtestsrv answers ``address`` for every name: where pebble validates.
    """
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "pebble.crt"))
    leaf.private_key_pem.write_to_path(str(tmp / "pebble.key"))
    listen, management = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(tmp / "pebble.crt"),
            "privateKey": str(tmp / "pebble.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab is not None,
            "externalAccountMACKeys": eab or {},
            "certificateValidityPeriod": validity,
        }
    }
    (tmp / "pebble.json").write_text(json.dumps(config))
    processes = []
    if dns is None:
        dns_port, challtest_admin = free_port(), free_port()
        processes.append(
            Process(
                ["pebble-challtestsrv", "-management", f"127.0.0.1:{challtest_admin}",
                 "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-defaultIPv4", address, "-defaultIPv6", ""],
                tmp / "challtestsrv.log",
            )
        )  # fmt: skip
        wait_for(lambda: accepts(challtest_admin), what="pebble-challtestsrv")
        dns = f"127.0.0.1:{dns_port}"
    env_cmd = ["env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0"]
    processes.append(
        Process(
            [*env_cmd, "pebble", "-config", str(tmp / "pebble.json"), "-dnsserver", dns],
            tmp / "pebble.log",
        )
    )
    # pebble makes its root and intermediate keys first: seconds on a busy machine
    wait_for(lambda: accepts(listen) and accepts(management), timeout=60, what="pebble")
    ca_pem = ca.cert_pem.bytes()
    return Pebble(
        directory=f"https://127.0.0.1:{listen}/dir",
        management=management,
        ca_pem=ca_pem,
        processes=processes,
    )


@dataclass
class Bind:
    """A BIND authoritative for ``zone``, accepting TSIG-signed TXT updates."""

    address: str
    key_name: str
    secret: str
    process: Process


ZONE = "acme.test"


def start_bind(tmp: Path) -> Bind:
    """named on a free loopback port, zone acme.test, updates allowed for key ``edgegw``."""
    port = free_port()
    out = subprocess.run(
        ["tsig-keygen", "-a", "hmac-sha256", "edgegw"], capture_output=True, text=True, check=True
    )
    secret = out.stdout.split('secret "')[1].split('"')[0]
    (tmp / "named").mkdir()
    (tmp / "named" / f"{ZONE}.zone").write_text(
        f"$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n"
        f"@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n* IN A 127.0.0.1\n@ IN A 127.0.0.1\n"
    )
    (tmp / "named" / "named.conf").write_text(
        out.stdout
        + f"""
options {{
  directory "{tmp / "named"}";
  pid-file none;
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
}};
controls {{ }};
zone "{ZONE}" {{
  type primary;
  file "{ZONE}.zone";
  update-policy {{ grant edgegw zonesub TXT; }};
}};
"""
    )
    process = Process(["named", "-g", "-c", str(tmp / "named" / "named.conf")], tmp / "named.log")
    wait_for(lambda: accepts(port), what="named")
    return Bind(address=f"127.0.0.1:{port}", key_name="edgegw", secret=secret, process=process)
