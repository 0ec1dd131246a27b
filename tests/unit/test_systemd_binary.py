"""dist/edgegw (``make binary``) runs on the system python3 alone, native extensions included.

Building takes pip and a few seconds, so the build is `make binary`; these tests check its
result when it is there (CI runs ``make binary`` first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BINARY = Path(__file__).resolve().parents[2] / "dist" / "edgegw"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")

pytestmark = [
    pytest.mark.skipif(not BINARY.exists(), reason="dist/edgegw not built (make binary)"),
    pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system python3"),
]


def run_binary(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run from / with a bare environment: no venv, no source tree on the path."""
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}
    return subprocess.run(
        [str(BINARY), *args], cwd="/", env=bare, capture_output=True, text=True, timeout=120
    )


def test_binary_is_one_executable_file_for_the_system_python() -> None:
    assert BINARY.is_file()
    assert os.access(BINARY, os.X_OK)
    assert BINARY.read_bytes()[:64].startswith(b"#!/usr/bin/env python3\n")


def test_binary_prints_its_version(tmp_path: Path) -> None:
    done = run_binary(tmp_path, "version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("edgegw ")


def test_binary_carries_the_native_extensions(tmp_path: Path) -> None:
    code = (
        "import sys, msgspec, httptools, watchfiles, yaml, trio, OpenSSL, edgegw.l2.run;"
        "from cryptography.hazmat.bindings import _rust;"
        "print(sys.executable, msgspec.__file__)"
    )
    done = run_binary(tmp_path, "-c", code, SHIV_INTERPRETER="1")
    assert done.returncode == 0, done.stderr
    executable, msgspec_path = done.stdout.split()
    assert SYSTEM_PYTHON is not None
    assert Path(executable).resolve() == Path(SYSTEM_PYTHON).resolve()
    assert msgspec_path.startswith(str(tmp_path / ".shiv"))
