"""Which modules of a package mypyc compiled, and running their sources instead when it must.

``pip install .`` compiles the per-request parsers with mypyc where a C compiler is present
(``setup.py``, ``MYPYC_MODULES``): the extension module (``http1.cpython-311-….so``) sits
beside its ``.py``, and Python imports the extension first. The ``.py`` stays the reference,
and two cases want it run instead:

* ``EDGEGW_NO_MYPYC=1`` in the environment. The switch that makes a build pure also makes a
  compiled install run its sources: to compare the two, or to rule the compiled code out;
* a source checkout (the editable install ``scripts/setup`` makes) whose ``.py`` changed
  after the build. The extension is stale there, and importing it would run the old code
  silently; the source runs, with a warning, until the next ``scripts/setup``.

``use_sources`` puts the source modules into ``sys.modules`` in both cases, and is called by
the package's ``__init__`` before any of its modules is imported. ``load_source`` loads one
module's source apart, without replacing anything: tests and ``bench/http1_parser.py`` run
both variants side by side with it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

_log = logging.getLogger(__name__)

DISABLE_ENV = "EDGEGW_NO_MYPYC"
_STALE_AFTER = 2.0  # seconds: installers write a wheel's .py and .so within milliseconds


def disabled() -> bool:
    """True when ``EDGEGW_NO_MYPYC`` asks for the pure-Python modules."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def extension_of(package_dir: Path, name: str) -> Path | None:
    """The extension module the import system would load for ``name``, if there is one."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package_dir / (name + suffix)
        if path.is_file():
            return path
    return None


def compiled_names(package_dir: Path) -> list[str]:
    """Modules of ``package_dir`` present both as an extension and as a ``.py`` source."""
    return sorted(
        source.stem
        for source in package_dir.glob("*.py")
        if extension_of(package_dir, source.stem) is not None
    )


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from an extension (a mypyc build), not from source."""
    path = getattr(module, "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def load_source(package: str, name: str) -> ModuleType:
    """``package.name`` loaded afresh from its ``.py``, not registered in ``sys.modules``."""
    path = Path(importlib.import_module(package).__path__[0]) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{package}.{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stale(package_dir: Path, name: str) -> bool:
    """In a source checkout, True when ``name.py`` changed after its extension was built."""
    if not (package_dir.parent.parent / "pyproject.toml").is_file():
        return False  # an installed wheel or zipapp: files as the build made them
    extension = extension_of(package_dir, name)
    assert extension is not None
    built = extension.stat().st_mtime
    return (package_dir / f"{name}.py").stat().st_mtime > built + _STALE_AFTER


def use_sources(package: str, package_dir: Path) -> list[str]:
    """Run sources instead of extensions where asked to or where stale (module docstring).

    Args:
        package: the package's name (``edgegw.proto``).
        package_dir: its directory.

    Returns:
        The names whose source now stands in for an extension.
    """
    replaced = []
    for name in compiled_names(package_dir):
        if not disabled():
            if not _stale(package_dir, name):
                continue
            _log.warning(
                "%s.%s: %s.py changed after mypyc compiled it; running the source "
                "(scripts/setup rebuilds the extension)",
                package,
                name,
                name,
            )
        module = load_source(package, name)
        sys.modules[module.__name__] = module
        setattr(sys.modules[package], name, module)
        replaced.append(name)
    return replaced


def summary(package: str) -> str:
    """One line for ``edgegw version``: which modules of ``package`` run compiled, if any."""
    package_dir = Path(importlib.import_module(package).__path__[0])
    names = [
        f"{package}.{name}"
        for name in compiled_names(package_dir)
        if is_compiled(importlib.import_module(f"{package}.{name}"))
    ]
    if not names:
        return "pure Python: no module compiled with mypyc"
    return "compiled with mypyc: " + ", ".join(names)
