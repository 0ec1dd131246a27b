"""Path normalization and control characters in fields (``proto/target.py``)."""

from __future__ import annotations

import pytest

from edgegw.proto.target import normalize_path


@pytest.mark.parametrize(
    ("sent", "normalized"),
    [
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/public/.%2e/admin", "/admin"),
        ("/public/%2e./admin", "/admin"),
        ("/public/./../admin", "/admin"),
        ("/public/./x", "/public/x"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/c/./../../g", "/a/g"),  # RFC 3986 section 5.2.4's own example
        ("/..", "/"),  # above the root: dropped, as Envoy does
        ("/../../etc/passwd", "/etc/passwd"),
        ("/.", "/"),
        ("//a///b//", "/a/b/"),
        ("/a//../b", "/a/b"),
        ("/%41%62%7e%2D%5f", "/Ab~-_"),  # unreserved escapes decoded
        ("/a%2Fb/..%2F..%2Fadmin", "/a%2Fb/..%2F..%2Fadmin"),  # encoded slashes kept
        ("/a%5Cb%5c..", "/a%5Cb%5c.."),
        ("/a%20b%3F%zz%", "/a%20b%3F%zz%"),  # reserved, invalid and cut escapes kept
        ("/.well-known/acme", "/.well-known/acme"),
        ("/..hidden/x", "/..hidden/x"),
        ("/", "/"),
        ("*", "*"),
    ],
)
def test_normalize_path(sent: str, normalized: str) -> None:
    assert normalize_path(sent) == normalized


def test_normalize_path_is_idempotent_and_free_when_clean() -> None:
    clean = "/api/v1/items"
    assert normalize_path(clean) is clean
    once = normalize_path("/a/%2e%2e/%2e/b//c/%2E")
    assert normalize_path(once) == once == "/b/c/"
