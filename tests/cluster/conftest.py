"""A one-member etcd on loopback for the etcd client and session tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcdrig import EtcdMember, EtcdRig
from tests.ports import free_port


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdRig]:
    root = Path(tempfile.mkdtemp(prefix="egw-etcd-"))
    rig = EtcdRig(root, [EtcdMember("m1", "127.0.0.1", free_port(), free_port())])
    try:
        rig.start_all()
        yield rig
    finally:
        rig.stop_all()
        shutil.rmtree(root, ignore_errors=True)
