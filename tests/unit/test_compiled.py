"""The mypyc-compiled modules where the build could compile them, and their sources where they
must run.

``setup.py`` compiles the HTTP/1.1 parser, the HTTP/2 codec, ``proto/http2.py`` and the
decision (``net/decide.py`` and the routing table) when a C compiler, the Python headers and
mypyc are present (as ``scripts/setup test`` makes them here), so the whole suite runs them
compiled; ``test_http1_differential.py`` and
``test_http1_properties.py`` run the parser's source too, and the last test here compares an
HTTP/2 exchange's bytes between the two builds. ``edgegw.proto.compiled`` runs every source
when ``EDGEGW_NO_MYPYC`` is set at run time or when any extension is older than its source in
a checkout (stale).
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


ROOT = PROTO.parent
#: what setup.py's MYPYC_MODULES names: the modules that run every request's sans-IO work
EXPECTED = sorted(
    ["proto.http1", "proto.http2", "proto.target", "proto.via"]
    + [f"proto.h2codec.{p.stem}" for p in (PROTO / "h2codec").glob("[!_]*.py")]
    + ["routing.matchers", "routing.table", "net.decide"]
)


def test_the_hot_modules_run_compiled_where_the_build_could_compile_them() -> None:
    expected = build_can_compile() and not compiled.disabled()
    assert compiled.is_compiled(http1) == expected, (
        f"edgegw.proto.http1 is {http1.__file__}: rebuild with scripts/setup test"
    )
    if expected:  # (EDGEGW_NO_MYPYC=1 at run time leaves the extensions on disk)
        assert compiled.compiled_names(ROOT) == EXPECTED
    for name in EXPECTED:
        module = importlib.import_module(f"edgegw.{name}")
        assert compiled.is_compiled(module) == expected, module.__file__
    summary = compiled.summary("edgegw")
    assert summary.startswith("compiled with mypyc: " if expected else "pure Python")
    assert ("edgegw.proto.h2codec.receive" in summary) == expected


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
    assert "edgegw.proto.http1" in sys.modules
    assert sys.modules["edgegw.proto.http1"] is http1


def test_edgegw_no_mypyc_at_run_time_runs_every_source() -> None:
    code = (
        "import sys, edgegw.proto.http1 as a, edgegw.proto.h2codec.receive as b; "
        "print(a.__file__); print(b.__file__); print('edgegw.mypyc__mypyc' in sys.modules)"
    )
    env = {**os.environ, compiled.DISABLE_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [
        str(PROTO / "http1.py"),
        str(PROTO / "h2codec" / "receive.py"),
        "False",  # the group's shared library is never loaded
    ]
    assert done.stderr == ""  # asked for: no warning


def make_package(root: Path, *, checkout: bool) -> Path:
    """``root/pkg/sub`` with ``mod.py``, ``inner/deep.py`` and (fake) extension modules
    beside them: one group, as mypyc builds it."""
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    sub = root / "pkg" / "sub"
    (sub / "inner").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("")
    (sub / "inner" / "__init__.py").write_text("")
    for module in (sub / "mod", sub / "inner" / "deep"):
        module.with_suffix(".py").write_text("SOURCE = True\n")
        Path(f"{module}{SUFFIX}").write_bytes(b"not loaded by these tests")
    (sub / "mod_helper.py").write_text("")  # no extension beside it: not compiled
    return sub


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def clean_pkg() -> Iterator[None]:
    yield
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if not (isinstance(f, compiled.SourceFinder) and "pkg.sub.mod" in f.sources)
    ]


@pytest.mark.usefixtures("clean_pkg")
@pytest.mark.parametrize("checkout", [True, False])
def test_one_stale_extension_gives_the_whole_group_to_its_sources_in_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkout: bool
) -> None:
    monkeypatch.delenv(compiled.DISABLE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    sub = make_package(tmp_path, checkout=checkout)
    importlib.import_module("pkg.sub")
    assert compiled.compiled_names(sub) == ["inner.deep", "mod"]

    age(sub / "mod.py", 60)  # built after the sources changed: current
    age(sub / "inner" / "deep.py", 60)
    assert compiled.use_sources("pkg.sub", sub) == []
    assert "pkg.sub.mod" not in sys.modules

    age(sub / "inner" / f"deep{SUFFIX}", 120)  # one source changed after the build
    replaced = compiled.use_sources("pkg.sub", sub)
    if not checkout:
        assert replaced == []  # installed files keep the times the installer gave them
        return
    assert replaced == ["inner.deep", "mod"]  # mod too: it may call deep's compiled code
    from pkg.sub import mod  # type: ignore[import-not-found]
    from pkg.sub.inner import deep  # type: ignore[import-not-found]

    assert mod.__file__ == str(sub / "mod.py")
    assert mod.SOURCE
    assert deep.__file__ == str(sub / "inner" / "deep.py")


@pytest.mark.usefixtures("clean_pkg")
def test_edgegw_no_mypyc_replaces_even_a_current_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.DISABLE_ENV, "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    sub = make_package(tmp_path, checkout=False)
    importlib.import_module("pkg.sub")
    assert compiled.use_sources("pkg.sub", sub) == ["inner.deep", "mod"]
    assert importlib.import_module("pkg.sub.mod").SOURCE


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
    age(sub / "inner" / f"deep{SUFFIX}", -60)
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
    assert "running the source of every compiled module" in done.stderr
    assert "scripts/setup" in done.stderr


#: An HTTP/2 exchange through edgegw's server end (h2 as the client): every event the codec
#: gives, what parse_request makes of it and every byte the codec writes, in one line.
EXCHANGE = """
import sys
import h2.config, h2.connection
import edgegw.proto.h2codec.framing as framing
from edgegw.proto import h2codec, http2
client = h2.connection.H2Connection(
    h2.config.H2Configuration(client_side=True, header_encoding=None)
)
client.initiate_connection()
server = http2.server_connection(http2.H2Limits())
seen = []
def feed(data):
    try:
        events = server.receive_data(data)
    except h2codec.H2Error as exc:
        seen.append(("error", type(exc).__name__, str(exc)))
        return
    for event in events:
        seen.append(repr(event))
        if isinstance(event, h2codec.events.RequestReceived):
            seen.append(repr(http2.parse_request(event.headers)))
            ok = http2.response_headers(200, [(b"content-type", b"text/plain")])
            server.send_headers(event.stream_id, ok)
            server.send_data(event.stream_id, b"x" * 100, end_stream=True)
    out = server.data_to_send()
    seen.append(out.hex())
    client.receive_data(out)
feed(client.data_to_send())
for path in (b"/a", b"/b?q=1", b"/c"):
    sid = client.get_next_available_stream_id()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", path),
              (b":authority", b"example.com"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    client.send_headers(sid, fields, end_stream=True)
    feed(client.data_to_send())
feed(b"\\x00\\x00\\x01\\x01\\x05\\x00\\x00\\x00\\x09\\x82")  # HEADERS, stream 9: no :path
feed(b"\\x00\\x00\\x08\\x07\\x00\\x00\\x00\\x00\\x01" + bytes(8))  # GOAWAY on a stream
print(framing.__file__)
print(seen)
"""


def run_exchange(env: dict[str, str], cwd: Path | None = None) -> tuple[str, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", EXCHANGE], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    file, seen = done.stdout.splitlines()
    return file, seen, done.stderr


def test_the_compiled_codec_and_its_source_exchange_the_same_bytes() -> None:
    env = {k: v for k, v in os.environ.items() if k != compiled.DISABLE_ENV}
    file, seen, _ = run_exchange(env)
    source_file, source_seen, _ = run_exchange({**env, compiled.DISABLE_ENV: "1"})
    assert source_file.endswith("framing.py")
    assert file.endswith(".so" if build_can_compile() else ".py")
    assert "RequestReceived" in seen
    assert "ProtocolError" in seen
    assert seen == source_seen


@pytest.mark.skipif(not compiled.compiled_names(ROOT), reason="a pure build: nothing stale")
def test_a_stale_module_of_the_real_group_runs_the_whole_group_from_source(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "edgegw"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'edgegw'\n")
    age(copy / "proto" / "h2codec" / "framing.py", -60)  # edited after the build
    env = {k: v for k, v in os.environ.items() if k != compiled.DISABLE_ENV}
    env["PYTHONPATH"] = str(tmp_path)
    file, seen, stderr = run_exchange(env, cwd=tmp_path)
    assert file == str(copy / "proto" / "h2codec" / "framing.py")
    assert "edgegw.proto.h2codec.framing: framing.py changed after mypyc compiled it" in stderr
    assert "RequestReceived" in seen
