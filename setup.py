"""Build hook: compile the per-request sans-IO modules with mypyc where a C compiler is present.

pyproject.toml holds everything else; this file only adds optional extension modules. The
modules in ``MYPYC_MODULES`` run every request's sans-IO work (``bench/http1_parser.py``
measures what compiling the HTTP/1.1 parser saves, ``bench/h2_floor.py`` the HTTP/2 codec),
and each stays importable as pure Python: the build is pure
when ``EDGEGW_NO_MYPYC=1`` is set, when mypyc is missing, or when mypyc or the C compiler
fails (no ``cc``, no Python headers), and says why in the build log. ``edgegw version`` says
which modules an install runs compiled; ``edgegw/proto/compiled.py`` runs the sources where
an extension is stale or ``EDGEGW_NO_MYPYC=1`` is set at run time.

The modules are compiled as one group (``GROUP``): one shared library holds their code, and
calls between them are C calls. A package's ``__init__`` stays Python (it only imports).

The mypyc step runs inside ``build_ext`` (not when this file is read), so the metadata steps
of a ``pip install`` stay fast; the placeholder extension only tells setuptools that the
wheel is platform-specific.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

GROUP = "edgegw.mypyc"  # the shared library: edgegw/mypyc__mypyc.<suffix>
MYPYC_MODULES = [
    "edgegw/proto/http1.py",
    *sorted(glob.glob("edgegw/proto/h2codec/[!_]*.py")),
    "edgegw/proto/http2.py",
    # The decision every request takes (~30 % less CPU compiled): routing/hosts.py stays
    # Python, as mypyc cannot build its generic frozen dataclass (HostIndex).
    "edgegw/proto/target.py",
    "edgegw/proto/via.py",
    "edgegw/routing/matchers.py",
    "edgegw/routing/table.py",
    "edgegw/net/decide.py",
]
# pip builds in an isolated environment that has mypy and msgspec but not edgegw's other
# dependencies (trio, hpack, cryptography...): the compiled modules' imports of them are typed
# Any there, and the modules they import but that are not compiled are not checked (mypy
# checks them all in the development venv). Without these, a fresh install is pure Python.
_MYPY_OPTIONS = [
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--no-warn-return-any",
    "--no-warn-unused-ignores",
]
_METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
_COMPILE_FAILURES = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


class MypycBuildExt(build_ext):
    """``build_ext`` that compiles ``MYPYC_MODULES``, or builds nothing and says why."""

    def finalize_options(self) -> None:
        """Generate the C code with mypyc: the extensions to build, or none.

        Not for the metadata steps of a build (egg_info lists the extensions' sources):
        nothing is compiled there.
        """
        if not set(self.distribution.commands) <= _METADATA_ONLY:
            self.distribution.ext_modules = self._mypycify()
        super().finalize_options()

    def run(self) -> None:
        """Compile; on a compiler failure leave no extension behind (pure Python).

        An earlier build's extensions go first: they would still be installed (from
        build_lib, as the wheel packs it whole) or shadow the sources (in place, an editable
        install), also those of a module no longer compiled.
        """
        _remove_extensions(self.build_lib)
        if self.inplace:
            _remove_extensions(".")
        if not self.extensions:
            return
        try:
            super().run()
        except _COMPILE_FAILURES as exc:
            self.extensions = []
            _pure(f"the C compiler failed: {exc}")
            _remove_extensions(self.build_lib)
            if self.inplace:
                _remove_extensions(".")
            return
        print(f"edgegw: compiled with mypyc: {', '.join(MYPYC_MODULES)}")
        if self.inplace:
            _mark_built(".")

    def copy_file(self, infile: str, outfile: str, *args: Any, **kwargs: Any) -> Any:
        """Replace an extension in the source tree, never rewrite it in place: a running
        process has the old file mapped, and would crash on the new bytes under it."""
        if os.path.isfile(outfile):
            os.remove(outfile)
        return super().copy_file(infile, outfile, *args, **kwargs)

    def _mypycify(self) -> list[Extension]:
        if os.environ.get("EDGEGW_NO_MYPYC", "") not in ("", "0"):
            return _pure("EDGEGW_NO_MYPYC is set")
        try:
            from mypyc.build import mypycify
        except ImportError:
            return _pure("mypyc is not installed")
        self.set_undefined_options("build", ("build_temp", "build_temp"))
        try:
            target = os.path.join(self.build_temp, "mypyc")
            return mypycify(
                [*_MYPY_OPTIONS, *MYPYC_MODULES],
                opt_level="3",
                target_dir=target,
                group_name=GROUP,
            )
        except SystemExit:  # mypyc reports type errors and exits
            return _pure("mypyc failed, see above")


def _remove_extensions(root: str) -> None:
    """Every extension under ``root/edgegw``: edgegw has none but mypyc's (and those of
    modules that left ``MYPYC_MODULES``, or of an earlier group, must go too)."""
    for path in glob.glob(os.path.join(root, "edgegw", "**", "*.so"), recursive=True):
        os.remove(path)


def _mark_built(root: str) -> None:
    """Date the extensions in the source tree now: ``compiled.py`` finds an extension stale
    when its ``.py`` is newer, and a build that left a shim's bytes unchanged (the code is
    in the shared library) would leave it dated from an earlier build."""
    for path in glob.glob(os.path.join(root, "edgegw", "**", "*.so"), recursive=True):
        os.utime(path)


def _pure(reason: str) -> list[Extension]:
    print(f"edgegw: pure-Python build, no mypyc ({reason})")
    return []


setup(
    ext_modules=[Extension(f"{GROUP}__mypyc", sources=[])],  # replaced in build_ext
    cmdclass={"build_ext": MypycBuildExt},
)
