"""The build stays pure Python, and says why, where mypyc cannot compile.

``setup.py`` compiles the per-request parsers with mypyc only as an option: without a C
compiler on the PATH, or with ``EDGEGW_NO_MYPYC=1``, ``build_ext`` must succeed and build no
extension, so ``pip install .`` installs the Python modules. (The compiled case is the one
this suite runs on: ``scripts/setup`` builds it, ``test_compiled.py`` checks it is there, and
``test_binary.py`` checks that ``make binary`` carries it.) ``build_ext`` runs on its own here,
into a temporary directory, as pip's build of a wheel runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def build_ext(tmp_path: Path, env: dict[str, str]) -> tuple[str, list[Path]]:
    """Run ``setup.py build_ext`` into ``tmp_path``: its output and the extensions it made."""
    dirs = ["--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "temp")]
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", *dirs],
        cwd=ROOT,
        env={"HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, sorted(tmp_path.rglob("*.so"))


def test_without_a_c_compiler_the_build_is_pure_python(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()  # a PATH with no cc, gcc or anything else on it
    output, extensions = build_ext(tmp_path, {"PATH": str(empty)})
    assert "edgegw: pure-Python build, no mypyc (the C compiler failed" in output
    assert extensions == []


def test_edgegw_no_mypyc_builds_pure_python_even_over_a_compiled_build(tmp_path: Path) -> None:
    earlier = tmp_path / "lib" / "edgegw" / "proto" / f"http1{EXTENSION_SUFFIXES[0]}"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")  # what a compiled build left: the wheel would pack it
    output, extensions = build_ext(tmp_path, {"PATH": os.environ["PATH"], "EDGEGW_NO_MYPYC": "1"})
    assert "edgegw: pure-Python build, no mypyc (EDGEGW_NO_MYPYC is set)" in output
    assert extensions == []
