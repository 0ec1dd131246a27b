"""The shipped unit files pass `systemd-analyze verify` without a single warning."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
NAMES = ("edgegw.service", "edgegw-l2.service")

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def verify(tmp_path: Path, edit: str = "") -> str:
    """Copy the units with ExecStart on an existing binary and return verify's output."""
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/edgegw", "/bin/true")
        if name == "edgegw.service":
            text += edit
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in NAMES)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else " (failed)")


@needs_analyze
def test_units_verify_cleanly(tmp_path: Path) -> None:
    assert verify(tmp_path) == ""


@needs_analyze
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    assert "NoSuchSetting" in verify(tmp_path, "NoSuchSetting=yes\n")


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


def test_gateway_unit_runs_unprivileged_under_notify() -> None:
    unit = service("edgegw.service")
    assert unit["Type"] == "notify"
    # $EDGEGW_CLUSTER is empty unless /etc/default/edgegw sets it (README "Two or three boxes").
    assert unit["ExecStart"] == "/usr/local/bin/edgegw run -c /etc/edgegw $EDGEGW_CLUSTER"
    assert "Environment=EDGEGW_CLUSTER=\n" in (UNITS / "edgegw.service").read_text()
    assert unit["EnvironmentFile"] == "-/etc/default/edgegw"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["AmbientCapabilities"] == unit["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert unit["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert unit["ProtectSystem"] == "strict"
    assert "WatchdogSec" in unit


def test_l2_unit_has_only_the_raw_network_capabilities() -> None:
    unit = service("edgegw-l2.service")
    assert set(unit["CapabilityBoundingSet"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(unit["RestrictAddressFamilies"].split()) >= {"AF_PACKET", "AF_NETLINK"}


def unit_section(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Unit"]


def test_l2_unit_outlives_a_gateway_restart() -> None:
    """A gateway restart must not restart the speaker: it keeps the addresses announced."""
    unit = unit_section("edgegw-l2.service")
    assert "BindsTo" not in unit
    assert "PartOf" not in unit
    assert unit["Wants"] == unit["After"] == "edgegw.service"
