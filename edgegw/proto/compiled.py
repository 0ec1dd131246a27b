"""Which modules of edgegw mypyc compiled, and running their sources instead when it must.

``pip install .`` compiles the per-request sans-IO modules with mypyc where a C compiler is
present (``setup.py``, ``MYPYC_MODULES``): each module's extension (``http1.cpython-311-….so``)
sits beside its ``.py``, and Python imports the extension first. The extensions are one
group: their code lives in one shared library (``edgegw/mypyc__mypyc….so``), and a compiled
module calls another compiled module's functions and builds its classes directly, without
looking in ``sys.modules``. So the group runs compiled or runs from source as a whole: a
compiled ``receive`` beside a source ``framing`` would keep running the old ``framing``, and
would refuse the source module's objects where it expects its own native classes.

The ``.py`` files stay the reference, and two cases want them run instead:

* ``EDGEGW_NO_MYPYC=1`` in the environment. The switch that makes a build pure also makes a
  compiled install run its sources: to compare the two, or to rule the compiled code out;
* a source checkout (the editable install ``scripts/setup`` makes) where any compiled
  module's ``.py`` changed after the build. Its extension is stale, and importing it would
  run the old code silently; the whole group runs from source, with a warning, until the
  next ``scripts/setup``.

``use_sources`` then puts a finder first on ``sys.meta_path`` that imports every module of
the group from its ``.py``. ``edgegw/__init__.py`` calls it before any other module of the
package is imported, so no extension of the group is ever loaded. ``load_source`` loads one
module's source apart, without replacing anything: tests and ``bench/http1_parser.py`` run
both variants side by side with it (a source module may call compiled ones; never the
reverse).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
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
    """Modules of ``package_dir`` and its subpackages present both as an extension and as a
    ``.py`` source, dotted relative to ``package_dir`` (``http1``, ``h2codec.framing``)."""
    names = []
    for parent, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        prefix = ".".join(Path(parent).relative_to(package_dir).parts)
        for file in files:
            stem, dot, suffix = file.rpartition(".")
            if dot and suffix == "py" and extension_of(Path(parent), stem) is not None:
                names.append(f"{prefix}.{stem}" if prefix else stem)
    return sorted(names)


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from an extension (a mypyc build), not from source."""
    path = getattr(module, "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _source_path(package: str, name: str) -> Path:
    return Path(importlib.import_module(package).__path__[0], *name.split(".")).with_suffix(".py")


def load_source(package: str, name: str) -> ModuleType:
    """``package.name`` loaded afresh from its ``.py``, not left in ``sys.modules``.

    It is there while its body runs (``dataclass`` looks its module up), then whatever was
    there before is put back.
    """
    fullname = f"{package}.{name}"
    spec = importlib.util.spec_from_file_location(fullname, _source_path(package, name))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(fullname)
    sys.modules[fullname] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del sys.modules[fullname]
        else:
            sys.modules[fullname] = before
    return module


class SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the modules it was given from their ``.py`` files, not their extensions."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The source's spec for a module of the group; None (ask the next finder) else."""
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _stale(package: str, package_dir: Path, names: list[str]) -> str | None:
    """In a source checkout, the first of ``names`` whose ``.py`` changed after its
    extension was built."""
    if not (package_dir.parents[package.count(".")] / "pyproject.toml").is_file():
        return None  # an installed wheel or zipapp: files as the build made them
    for name in names:
        source = package_dir.joinpath(*name.split(".")).with_suffix(".py")
        extension = extension_of(source.parent, source.stem)
        assert extension is not None
        if source.stat().st_mtime > extension.stat().st_mtime + _STALE_AFTER:
            return name
    return None


def use_sources(package: str, package_dir: Path) -> list[str]:
    """Run the sources instead of the extensions where asked to or where any is stale
    (module docstring).

    Args:
        package: the top package's name (``edgegw``).
        package_dir: its directory.

    Returns:
        The names, relative to ``package``, whose source now stands in for an extension.
    """
    names = compiled_names(package_dir)
    if not names:
        return []
    if not disabled():
        stale = _stale(package, package_dir, names)
        if stale is None:
            return []
        _log.warning(
            "%s.%s: %s.py changed after mypyc compiled it; running the source of every "
            "compiled module (scripts/setup rebuilds the extensions)",
            package,
            stale,
            stale.rpartition(".")[2],
        )
    sources = {
        f"{package}.{name}": package_dir.joinpath(*name.split(".")).with_suffix(".py")
        for name in names
    }
    sys.meta_path.insert(0, SourceFinder(sources))
    return names


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
