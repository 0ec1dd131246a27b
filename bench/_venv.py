"""The interpreter every bench runs edgegw on: ``.venv-bench``, made from the system python3.

An installed edgegw (``make binary``, the systemd units) runs on the system's python3,
``/usr/bin/python3``. That is often not the ``python3`` first on a developer's PATH: on
this project's machines a pyenv build (no PGO, no LTO, shared libpython) shadows Debian's
optimized one, and costs edgegw 8-16% more CPU per proxied request. The benches measure
the gateway as deployed, so they run it, its floors (`bench/trio_floor.py`,
`bench/h2_floor.py`) and themselves in a venv made from the system python3
(`scripts/setup bench`), falling back to ``python3`` where there is no system 3.11+.
RESULTS.md names the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
PYTHON = VENV / "bin" / "python"


STAMP = VENV / ".installed"


def _build_inputs() -> list[Path]:
    """What the install depends on: the build files and each mypyc-compiled module's source
    (a ``.py`` with an extension beside it: rebuilt, or the bench would run it stale)."""
    compiled = {
        source
        for extension in (ROOT / "edgegw").rglob("*.so")
        if (source := extension.parent / (extension.name.split(".")[0] + ".py")).is_file()
    }
    return [ROOT / "pyproject.toml", ROOT / "setup.py", *sorted(compiled)]


def ensure() -> Path:
    """The bench interpreter, made on first use and brought up to date when the project's
    dependencies or a compiled module changed (newer than the last install)."""
    newest = max(path.stat().st_mtime for path in _build_inputs())
    if not STAMP.exists() or STAMP.stat().st_mtime < newest:
        subprocess.run([str(ROOT / "scripts" / "setup"), "bench"], check=True)
        STAMP.touch()
    return PYTHON


def enter(script: str) -> None:
    """Re-run ``script`` (with this process's arguments) in the bench venv unless in it."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = str(ensure())
    os.execv(python, [python, script, *sys.argv[1:]])


if __name__ == "__main__":
    ensure()
