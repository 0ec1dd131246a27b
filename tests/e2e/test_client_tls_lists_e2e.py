"""ClientTrafficPolicy ``tls.ciphers`` and ``tls.ecdhCurves`` through ``edgegw run``, checked
with openssl s_client: the listed suite and group are negotiated, others are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import Gateway
from tests.e2e.test_client_policy_e2e import _s_client, _setup

pytestmark = pytest.mark.e2e

_TLS = """{minVersion: "1.2", maxVersion: "1.2", ciphers: [ECDHE-ECDSA-AES256-GCM-SHA384],
  ecdhCurves: [P-384], signatureAlgorithms: [ecdsa_secp256r1_sha256]}"""


def test_ciphers_and_curves(gateway: Gateway, echoes: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    https, _ = _setup(gateway, echoes, ca, _TLS)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ok = _s_client(https, ca_file, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert "Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384" in ok, ok
    other = _s_client(https, ca_file, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "Protocol version" not in other
    # in TLS 1.2 the client's groups also name the curve of the (P-256) certificate
    assert "Protocol version" in _s_client(https, ca_file, "-tls1_2", "-groups", "P-384:P-256")
    refused = _s_client(https, ca_file, "-tls1_2", "-groups", "X25519:P-256")
    assert "Protocol version" not in refused
