"""Pure policy logic: basic auth, client IP, authorization, rate limits, compression."""

from __future__ import annotations

import base64
import gzip
import subprocess

import brotli
import pytest
import zstandard

from edgegw import ir
from edgegw.policy import compress
from edgegw.policy.authz import Authorizer
from edgegw.policy.basicauth import BasicAuthVerifier, parse_htpasswd
from edgegw.policy.clientip import ClientIPDetector
from edgegw.policy.ratelimit import MAX_BUCKETS, RateLimiter


def _htpasswd(flag: str, user: str, password: str) -> bytes:
    args = ["htpasswd", "-nb", flag, user, password]
    if flag == "-B":
        args[2:2] = ["-C", "5"]
    return subprocess.run(args, check=True, capture_output=True).stdout.strip()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("flag", ["-s", "-m", "-B"])  # {SHA}, $apr1$, bcrypt
def test_htpasswd_hashes_from_apache_utils_verify(flag: str) -> None:
    users = parse_htpasswd(_htpasswd(flag, "alice", "s3cret") + b"\n# comment\n\n")
    verifier = BasicAuthVerifier(ir.BasicAuth(users=users))
    assert verifier.user(_basic("alice", "s3cret")) == "alice"
    assert verifier.user(_basic("alice", "wrong")) is None
    assert verifier.user(_basic("bob", "s3cret")) is None
    assert verifier.user("Bearer abc") is None
    assert verifier.user("Basic !!!") is None
    assert verifier.user(None) is None
    assert verifier.user(_basic("alice", "s3cret")) == "alice"  # from the cache


def test_htpasswd_refuses_plain_text_and_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2") as info:
        parse_htpasswd(b"a:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\nb:plaintext\n")
    assert "plaintext" not in str(info.value)
    with pytest.raises(ValueError, match="no users"):
        parse_htpasswd(b"# nothing\n")


def _xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


def test_client_ip_num_trusted_hops() -> None:
    detector = ClientIPDetector(ir.ClientIPDetection(num_trusted_hops=2))
    assert detector.client("10.0.0.1", _xff("1.1.1.1, 2.2.2.2", "3.3.3.3")) == "2.2.2.2"
    assert detector.client("10.0.0.1", _xff("3.3.3.3")) == "10.0.0.1"  # too few hops
    assert detector.client("10.0.0.1", _xff("junk, 3.3.3.3")) == "10.0.0.1"


def test_client_ip_trusted_cidrs_only_from_trusted_peers() -> None:
    detector = ClientIPDetector(ir.ClientIPDetection(trusted_cidrs=("10.0.0.0/8",)))
    assert detector.client("10.0.0.1", _xff("203.0.113.7, 10.1.1.1")) == "203.0.113.7"
    assert detector.client("198.51.100.1", _xff("203.0.113.7")) == "198.51.100.1"
    assert detector.client("10.0.0.1", _xff("10.2.2.2, 10.1.1.1")) == "10.2.2.2"
    assert detector.client("10.0.0.1", []) == "10.0.0.1"


def test_client_ip_custom_header_fail_closed() -> None:
    config = ir.ClientIPDetection(custom_header="x-real-ip", fail_closed=True)
    detector = ClientIPDetector(config)
    assert detector.client("10.0.0.1", [(b"x-real-ip", b"203.0.113.9")]) == "203.0.113.9"
    assert detector.client("10.0.0.1", [(b"x-real-ip", b"nope")]) is None
    open_config = ir.ClientIPDetection(custom_header="x-real-ip")
    assert ClientIPDetector(open_config).client("10.0.0.1", []) == "10.0.0.1"


def test_authorization_first_match_then_default() -> None:
    config = ir.Authorization(
        default_action="Deny",
        rules=(
            ir.AuthorizationRule(action="Deny", client_cidrs=("192.168.1.66/32",), name="bad"),
            ir.AuthorizationRule(action="Allow", client_cidrs=("192.168.1.0/24", "::1/128")),
            ir.AuthorizationRule(action="Allow", headers=(("x-team", ("ops", "dev")),)),
        ),
    )
    authz = Authorizer(config)
    none: dict[bytes, str] = {}
    assert authz.allows("192.168.1.66", none.get) == (False, "bad")
    assert authz.allows("192.168.1.7", none.get)[0]
    assert authz.allows("::1", none.get)[0]
    assert not authz.allows("203.0.113.1", none.get)[0]
    assert authz.allows("203.0.113.1", {b"x-team": "ops"}.get)[0]
    assert not authz.allows("203.0.113.1", {b"x-team": "sales"}.get)[0]


def test_rate_limit_distinct_source_cidr_gives_each_client_a_bucket() -> None:
    rule = ir.RateLimitRule(
        selectors=(ir.RateLimitSelector(source_cidr="0.0.0.0/0", source_distinct=True),),
        requests=2,
        seconds=1.0,
    )
    limiter = RateLimiter((rule,))
    none: dict[bytes, str] = {}
    assert [limiter.allow("10.0.0.1", none.get, 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.2", none.get, 0.1)  # another client, another bucket
    assert limiter.allow("10.0.0.1", none.get, 1.0)  # the next second refills
    assert limiter.allow("::1", none.get, 1.0)  # not in the IPv4 CIDR: not limited


def test_rate_limit_header_selectors_and_shared_bucket() -> None:
    rules = (
        ir.RateLimitRule(
            selectors=(
                ir.RateLimitSelector(headers=(ir.RateLimitHeaderMatch(name="x-user", value="a"),)),
            ),
            requests=1,
            seconds=60.0,
        ),
        ir.RateLimitRule(
            selectors=(
                ir.RateLimitSelector(
                    headers=(ir.RateLimitHeaderMatch(type="Distinct", name="x-org"),)
                ),
            ),
            requests=2,
            seconds=60.0,
        ),
    )
    limiter = RateLimiter(rules)
    assert limiter.allow("c", {b"x-user": "a"}.get, 0)
    assert not limiter.allow("c", {b"x-user": "a"}.get, 1)
    assert limiter.allow("c", {b"x-user": "b"}.get, 1)  # matches no rule
    org1 = {b"x-org": "1"}.get
    assert [limiter.allow("c", org1, 2) for _ in range(3)] == [True, True, False]
    assert limiter.allow("c", {b"x-org": "2"}.get, 2)


def test_rate_limit_memory_is_bounded() -> None:
    rule = ir.RateLimitRule(
        selectors=(ir.RateLimitSelector(source_cidr="10.0.0.0/8", source_distinct=True),),
        requests=1,
        seconds=3600.0,
    )
    limiter = RateLimiter((rule,))
    none: dict[bytes, str] = {}
    for i in range(MAX_BUCKETS + 500):
        limiter.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", none.get, 0.0)
    assert limiter.buckets() <= MAX_BUCKETS


def test_compression_choice_follows_client_q_then_policy_order() -> None:
    offered: tuple[ir.Compressor, ...] = ("zstd", "br", "gzip")
    assert compress.choose("gzip, deflate, br, zstd", offered) == "zstd"
    assert compress.choose("gzip, br", offered) == "br"
    assert compress.choose("gzip;q=1.0, br;q=0.5", offered) == "gzip"
    assert compress.choose("*;q=0.1, zstd;q=0", offered) == "br"
    assert compress.choose("identity", offered) is None
    assert compress.choose(None, offered) is None


def test_compression_only_for_compressible_complete_unencoded_responses() -> None:
    json = [(b"content-type", b"application/json; charset=utf-8")]
    assert compress.response_allows("GET", 200, json)
    assert compress.response_allows("GET", 200, [(b"content-type", b"application/ld+json")])
    assert not compress.response_allows("GET", 200, [(b"content-type", b"image/png")])
    assert not compress.response_allows("HEAD", 200, json)
    assert not compress.response_allows("GET", 206, json)
    assert not compress.response_allows("GET", 304, json)
    assert not compress.response_allows("GET", 200, [*json, (b"content-encoding", b"gzip")])
    assert not compress.response_allows("GET", 200, [*json, (b"content-range", b"bytes 0-1/9")])
    assert not compress.response_allows("GET", 200, [*json, (b"content-length", b"10")])
    assert not compress.response_allows(
        "GET", 200, [*json, (b"cache-control", b"public, no-transform")]
    )


@pytest.mark.parametrize(
    ("encoding", "decode"),
    [
        ("gzip", gzip.decompress),
        ("br", brotli.decompress),
        ("zstd", lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d)),
    ],
)
def test_encoders_stream_and_round_trip(encoding: ir.Compressor, decode: object) -> None:
    encoder = compress.Encoder(encoding)
    chunks = [b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 50) for i in range(200)]
    first = encoder.compress(chunks[0]) + encoder.flush()
    out = first + b"".join(encoder.compress(c) for c in chunks[1:]) + encoder.finish()
    assert callable(decode)
    assert decode(out) == b"".join(chunks)
    assert encoder.bytes_in == sum(map(len, chunks))
    assert encoder.bytes_out == len(out) < encoder.bytes_in / 5
    headers = compress.encoded_headers(
        [(b"content-length", b"9"), (b"etag", b'"abc"'), (b"vary", b"Origin")], encoding
    )
    assert headers == [
        (b"etag", b'W/"abc"'),
        (b"vary", b"Origin, Accept-Encoding"),
        (b"content-encoding", encoding.encode()),
    ]


def test_zstd_contexts_are_reused_only_after_a_stream_ends() -> None:
    first, second = compress.Encoder("zstd"), compress.Encoder("zstd")
    out = {1: first.compress(b"a" * 1000), 2: second.compress(b"b" * 1000)}
    out[1] += first.compress(b"A" * 500) + first.flush()
    out[2] += second.compress(b"B" * 500) + second.finish()
    third = compress.Encoder("zstd")  # takes the context the second one gave back
    out[3] = third.compress(b"c" * 100) + third.finish()
    out[1] += first.finish()
    decoded = {
        k: zstandard.ZstdDecompressor().decompressobj().decompress(v) for k, v in out.items()
    }
    assert decoded == {1: b"a" * 1000 + b"A" * 500, 2: b"b" * 1000 + b"B" * 500, 3: b"c" * 100}
