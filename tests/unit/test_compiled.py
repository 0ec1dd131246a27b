"""The mypyc-compiled parser where the build could compile it, and its source where it must run.

``setup.py`` compiles ``edgegw/proto/http1.py`` when a C compiler, the Python headers and mypyc
are present (as ``scripts/setup test`` makes them here), so the whole suite runs the compiled
parser; ``test_http1_differential.py`` and ``test_http1_properties.py`` run the source too.
``edgegw.proto.compiled`` falls back to the source when ``EDGEGW_NO_MYPYC`` is set at run time
or when the extension is older than its source in a checkout (stale).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgegw.proto import compiled, http1

PROTO = Path(compiled.__file__).parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def build_can_compile() -> bool:
    """What ``setup.py`` needs: mypyc, a C compiler and the headers of this Python."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return (
        importlib.util.find_spec("mypyc") is not None
        and shutil.which(cc) is not None
        and headers.is_file()
    )


def test_the_parser_runs_compiled_where_the_build_could_compile_it() -> None:
    expected = build_can_compile() and not compiled.disabled()
    assert compiled.is_compiled(http1) == expected, (
        f"edgegw.proto.http1 is {http1.__file__}: rebuild with scripts/setup test"
    )
    assert compiled.compiled_names(PROTO) == (["http1"] if expected else [])


def test_the_source_variant_is_a_separate_python_module() -> None:
    source = compiled.load_source("edgegw.proto", "http1")
    assert source.__file__ == str(PROTO / "http1.py")
    assert not compiled.is_compiled(source)
    assert source.RequestParser is not http1.RequestParser
    parser = source.RequestParser()
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    event = parser.next_event()
    assert event is not None
    assert event.target == b"/a"


def test_edgegw_no_mypyc_at_run_time_runs_the_source() -> None:
    code = "import edgegw.proto.http1 as m; print(m.__file__)"
    env = {**os.environ, compiled.DISABLE_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == str(PROTO / "http1.py")
    assert done.stderr == ""  # asked for: no warning


def make_package(root: Path, *, checkout: bool) -> Path:
    """``root/pkg/sub`` with ``mod.py`` and a (fake) extension module beside it."""
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    sub = root / "pkg" / "sub"
    sub.mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("")
    (sub / "mod.py").write_text("SOURCE = True\n")
    (sub / "mod_helper.py").write_text("")  # no extension beside it: not compiled
    (sub / f"mod{SUFFIX}").write_bytes(b"not loaded by these tests")
    return sub


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def clean_pkg() -> Iterator[None]:
    yield
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("clean_pkg")
@pytest.mark.parametrize("checkout", [True, False])
def test_a_stale_extension_gives_way_to_its_source_in_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkout: bool
) -> None:
    monkeypatch.delenv(compiled.DISABLE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    sub = make_package(tmp_path, checkout=checkout)
    importlib.import_module("pkg.sub")
    assert compiled.compiled_names(sub) == ["mod"]

    age(sub / "mod.py", 60)  # built after the source changed: current
    assert compiled.use_sources("pkg.sub", sub) == []
    assert "pkg.sub.mod" not in sys.modules

    age(sub / f"mod{SUFFIX}", 120)  # the source changed after the build
    replaced = compiled.use_sources("pkg.sub", sub)
    if not checkout:
        assert replaced == []  # installed files keep the times the installer gave them
        return
    assert replaced == ["mod"]
    assert sys.modules["pkg.sub.mod"].SOURCE
    from pkg.sub import mod  # type: ignore[import-not-found]

    assert mod.__file__ == str(sub / "mod.py")


@pytest.mark.usefixtures("clean_pkg")
def test_edgegw_no_mypyc_replaces_even_a_current_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.DISABLE_ENV, "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    sub = make_package(tmp_path, checkout=False)
    importlib.import_module("pkg.sub")
    assert compiled.use_sources("pkg.sub", sub) == ["mod"]
    assert sys.modules["pkg.sub.mod"].SOURCE


def test_edgegw_no_mypyc_zero_means_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled.DISABLE_ENV, "0")
    assert not compiled.disabled()
    monkeypatch.setenv(compiled.DISABLE_ENV, "1")
    assert compiled.disabled()


def test_the_fallback_warning_names_the_module_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from edgegw.proto import compiled
        sub = Path(sys.argv[1])
        import pkg.sub
        compiled.use_sources("pkg.sub", sub)
        """
    )
    sub = make_package(tmp_path, checkout=True)
    age(sub / f"mod{SUFFIX}", 120)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env.pop(compiled.DISABLE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(sub)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pkg.sub.mod: mod.py changed after mypyc compiled it" in done.stderr
    assert "scripts/setup" in done.stderr
