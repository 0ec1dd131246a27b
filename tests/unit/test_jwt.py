"""SecurityPolicy ``jwt`` as pure logic: tokens signed by PyJWT, checked as Envoy checks them."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from edgegw import ir
from edgegw.api import Resources
from edgegw.api.envoyjwt import JWT, JWTProvider, RemoteJWKS
from edgegw.net.decide import policy_answer
from edgegw.net.guard import Admission
from edgegw.policy import jwtverify as jv
from edgegw.policy.compiled import JWTContext, RuleGuard
from edgegw.policy.jwt import Authenticator, NoRemoteKeys, Outcome, remote_id
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.index import Index
from edgegw.translate.jwtconvert import JWTConverter, JWTProblem

NOW = 1_800_000_000.0
ISS = "https://issuer.example.com"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
HMAC_SECRET = b"a-shared-secret-of-at-least-32-bytes!!"


def _jwk(text: str, kid: str, **extra: str) -> dict[str, Any]:
    return {**json.loads(text), "kid": kid, **extra}


JWKS = json.dumps(
    {
        "keys": [
            _jwk(RSAAlgorithm.to_jwk(RSA_KEY.public_key()), "rsa"),
            _jwk(ECAlgorithm.to_jwk(EC_KEY.public_key()), "ec"),
            _jwk(OKPAlgorithm.to_jwk(ED_KEY.public_key()), "ed"),
            _jwk(HMACAlgorithm.to_jwk(HMAC_SECRET), "hs", alg="HS256"),
            {"kty": "unknown", "kid": "skipped"},
        ]
    }
).encode()
SIGNERS: dict[str, tuple[Any, str]] = {
    "RS256": (RSA_KEY, "rsa"),
    "PS384": (RSA_KEY, "rsa"),
    "ES256": (EC_KEY, "ec"),
    "EdDSA": (ED_KEY, "ed"),
    "HS256": (HMAC_SECRET, "hs"),
}


def token(alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
    key, default_kid = SIGNERS[alg]
    body = {"iss": ISS, "sub": "alice", "exp": NOW + 600, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid or default_kid}
    # PyJWS, not PyJWT: it signs any payload, claims of the wrong type included
    return pyjwt.PyJWS().encode(json.dumps(body).encode(), key, algorithm=alg, headers=headers)


def provider(**changes: Any) -> ir.JWTProvider:
    fields: dict[str, Any] = {"name": "p", "issuer": ISS, "local_jwks": JWKS}
    return ir.JWTProvider(**{**fields, **changes})


def check(
    auth: Authenticator,
    headers: dict[bytes, str] | None = None,
    query: str = "",
    now: float = NOW,
) -> Outcome:
    found = headers or {}
    return auth.check(found.get, query, NoRemoteKeys(), now)


def bearer(value: str) -> dict[bytes, str]:
    return {b"authorization": f"Bearer {value}"}


def one(**changes: Any) -> Authenticator:
    return Authenticator(ir.JWT(providers=(provider(**changes),)))


@pytest.mark.parametrize("alg", sorted(SIGNERS))
def test_a_good_token_of_each_algorithm_is_admitted(alg: str) -> None:
    assert check(one(), bearer(token(alg))).status is jv.OK


@pytest.mark.parametrize(
    ("claims", "now", "status"),
    [
        ({"exp": NOW - 61}, NOW, jv.EXPIRED),
        ({"exp": NOW - 59}, NOW, jv.OK),  # 60 s of clock skew, as Envoy
        ({"nbf": NOW + 61}, NOW, jv.NOT_YET_VALID),
        ({"nbf": NOW + 59}, NOW, jv.OK),
        ({"exp": None}, NOW + 10**6, jv.OK),  # no exp: never expires
        ({"iss": "https://other.example.com"}, NOW, jv.UNKNOWN_ISSUER),
        ({"iss": 7}, NOW, jv.ISS_NOT_STRING),
        ({"exp": "soon"}, NOW, jv.Status(401, "Jwt payload [exp] field is not an integer")),
    ],
)
def test_time_and_issuer(claims: dict[str, Any], now: float, status: jv.Status) -> None:
    assert check(one(), bearer(token(**claims)), now=now).status == status


def test_audiences_as_jwt_verify_lib_compares_them() -> None:
    auth = one(audiences=("https://api.example.com/", "other"))
    assert check(auth, bearer(token(aud="api.example.com"))).status is jv.OK
    assert check(auth, bearer(token(aud=["x", "http://api.example.com"]))).status is jv.OK
    wrong = check(auth, bearer(token(aud="evil.example.com"))).status
    assert wrong is jv.AUDIENCE_NOT_ALLOWED
    assert wrong.code == 403  # Envoy answers 403 for this one
    assert check(auth, bearer(token())).status is jv.AUDIENCE_NOT_ALLOWED  # no aud at all


def test_bad_signature_and_unknown_kid() -> None:
    good = token()
    head, payload, _ = good.split(".")
    forged = pyjwt.encode(
        {"iss": ISS, "sub": "mallory"},
        rsa.generate_private_key(65537, 2048),
        algorithm="RS256",
        headers={"kid": "rsa"},
    )
    assert check(one(), bearer(forged)).status is jv.VERIFICATION_FAILS
    spliced = f"{head}.{payload}.{forged.split('.')[2]}"
    assert check(one(), bearer(spliced)).status is jv.VERIFICATION_FAILS
    assert check(one(), bearer(token(kid="rotated"))).status is jv.KID_ALG_MISMATCH


def test_alg_none_and_algorithm_confusion_are_refused() -> None:
    unsigned = pyjwt.encode({"iss": ISS}, "", algorithm="none")
    assert check(one(), bearer(unsigned)).status is jv.ALG_NOT_IMPLEMENTED
    # HS256 "signed" with the RSA public key's JWK text: the RSA key is never an HMAC secret
    public = RSAAlgorithm.to_jwk(RSA_KEY.public_key()).encode()
    header = {"alg": "HS256", "kid": "rsa", "typ": "JWT"}
    segments = [_b64(json.dumps(header).encode()), _b64(json.dumps({"iss": ISS}).encode())]
    signing_input = ".".join(segments).encode()
    sig = HMACAlgorithm(HMACAlgorithm.SHA256).sign(signing_input, public)
    confused = ".".join([*segments, _b64(sig)])
    assert check(one(), bearer(confused)).status is jv.VERIFICATION_FAILS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


RS256_HEADER = _b64(b'{"alg": "RS256"}')


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("a.b", jv.BAD_FORMAT),
        ("a.b.c.d", jv.BAD_FORMAT),
        ("!!!.e30.sig", jv.HEADER_BASE64),
        (f"{_b64(b'not json')}.e30.c2ln", jv.HEADER_JSON),
        (f"{_b64(b'{}')}.e30.c2ln", jv.BAD_ALG),
        (f"{RS256_HEADER}.{_b64(b'[1]')}.c2ln", jv.PAYLOAD_JSON),
        ("x" * (jv.MAX_TOKEN - 4) + ".a.b.c", jv.TOO_LARGE),
    ],
)
def test_malformed_tokens(value: str, status: jv.Status) -> None:
    assert check(one(), query=f"access_token={value}").status == status


def test_missing_token_and_where_tokens_are_found() -> None:
    assert check(one()).status is jv.MISSING
    assert check(one(), {b"authorization": "Basic abc"}).status is jv.MISSING
    assert check(one(), query=f"access_token={token()}").status is jv.OK  # Envoy's default
    custom = one(headers=(("x-token", "Token "),), params=(), cookies=("session",))
    assert check(custom, {b"x-token": f"Token {token()}"}).status is jv.OK
    assert check(custom, {b"cookie": f"a=b; session={token()}"}).status is jv.OK
    assert check(custom, bearer(token())).status is jv.MISSING
    # the prefix may be anywhere in the value; the token is the run that follows it
    assert check(custom, {b"x-token": f"v1, Token {token()}, other"}).status is jv.OK
    # every token the provider finds must verify
    both = {b"x-token": f"Token {token()}", b"cookie": f"session={token(kid='rotated')}"}
    assert check(custom, both).status is jv.KID_ALG_MISMATCH


def test_claims_become_headers_as_envoy_writes_them() -> None:
    claims = (("x-sub", "sub"), ("x-org", "org.name"), ("x-n", "n"), ("x-ok", "ok"))
    auth = one(claim_to_headers=(*claims, ("x-obj", "org"), ("x-absent", "nope")))
    outcome = check(auth, bearer(token(org={"name": "acme"}, n=42, ok=True)))
    added = dict(outcome.add)
    assert added[b"x-sub"] == b"alice"
    assert added[b"x-org"] == b"acme"
    assert added[b"x-n"] == b"42"
    assert added[b"x-ok"] == b"true"
    assert json.loads(base64.b64decode(added[b"x-obj"])) == {"name": "acme"}
    assert b"x-absent" not in added
    assert auth.sanitize >= {b"x-sub", b"x-absent"}  # client copies are always removed


def test_any_provider_admits_and_the_last_one_reports() -> None:
    other = provider(name="other", issuer="https://other.example.com", audiences=("x",))
    auth = Authenticator(ir.JWT(providers=(other, provider())))
    assert check(auth, bearer(token())).status is jv.OK
    # neither admits: the status is the last provider's, as Envoy's "any" verifier gives it
    auth = Authenticator(ir.JWT(providers=(provider(), other)))
    assert check(auth, bearer(token(kid="rotated"))).status is jv.UNKNOWN_ISSUER


def test_optional_admits_only_a_missing_token() -> None:
    auth = Authenticator(ir.JWT(providers=(provider(),), optional=True))
    assert check(auth).status is jv.OK
    assert check(auth, bearer(token())).status is jv.OK
    assert check(auth, bearer(token(exp=NOW - 3600))).status is jv.EXPIRED
    fail_open = Authenticator(ir.JWT(providers=(provider(),), fail_open=True))
    assert check(fail_open, bearer(token(exp=NOW - 3600))).status is jv.OK


class _Remote:
    def __init__(self, keys: tuple[jv.Key, ...] | None) -> None:
        self.held = keys
        self.asked: list[str] = []

    def keys(self, remote: str) -> tuple[jv.Key, ...] | None:
        return self.held

    def unknown_kid(self, remote: str) -> None:
        self.asked.append(remote)


def test_remote_keys_fail_closed_until_fetched_and_unknown_kids_ask_again() -> None:
    backend = ir.Backend(name="jwks", endpoints=(ir.Endpoint(address="127.0.0.1", port=1),))
    remote = ir.RemoteJWKS(uri="http://127.0.0.1:1/jwks", backend=backend, host="h", target="/")
    auth = one(local_jwks=None, remote_jwks=remote)
    empty = _Remote(None)
    assert auth.check(bearer(token()).get, "", empty, NOW).status is jv.FETCH_FAILED
    held = _Remote(jv.parse_jwks(JWKS))
    assert auth.check(bearer(token()).get, "", held, NOW).status is jv.OK
    assert auth.check(bearer(token(kid="new")).get, "", held, NOW).status is jv.KID_ALG_MISMATCH
    assert held.asked == [remote_id(remote)]


def test_jwks_documents() -> None:
    with pytest.raises(ValueError, match="invalid JSON"):
        jv.parse_jwks(b"{")
    with pytest.raises(ValueError, match=r"\[keys\] field"):
        jv.parse_jwks(b"{}")
    with pytest.raises(ValueError, match="any valid public key"):
        jv.parse_jwks(b'{"keys": [{"kty": "RSA"}]}')
    keys = jv.parse_jwks(JWKS)
    assert [k.kid for k in keys] == ["rsa", "ec", "ed", "hs"]
    many = json.dumps({"keys": [json.loads(JWKS)["keys"][1]] * (jv.MAX_KEYS + 50)})
    assert len(jv.parse_jwks(many)) == jv.MAX_KEYS


def _guard(jwt: ir.JWT) -> RuleGuard:
    rule = ir.HTTPRouteRule(index=0, security=ir.SecurityPolicy(name="ns/p", jwt=jwt))
    return RuleGuard(rule)


def test_the_rule_guard_answers_as_envoy() -> None:
    guard = _guard(ir.JWT(providers=(provider(claim_to_headers=(("x-sub", "sub"),)),)))
    realm = "http://www.example.com/app?" + "q" * 400
    context = JWTContext(wall=NOW, realm=realm)
    nothing: dict[bytes, str] = {}
    verdict = guard.check("GET", "1.2.3.4", nothing.get, "", 0.0, context)
    assert (verdict.status, verdict.reason, verdict.body) == (401, "jwt", b"Jwt is missing")
    challenge = dict(verdict.headers)[b"www-authenticate"].decode()
    assert challenge == f'Bearer realm="{realm[: 22 + 256]}"'  # the path cut at 256, as Envoy
    expired = bearer(token(exp=NOW - 3600))
    verdict = guard.check("GET", "1.2.3.4", expired.get, "", 0.0, context)
    assert dict(verdict.headers)[b"www-authenticate"].endswith(b', error="invalid_token"')
    assert verdict.body == b"Jwt is expired"
    verdict = guard.check("GET", "1.2.3.4", bearer(token()).get, "", 0.0, context)
    assert verdict.status == 0
    assert verdict.add == [(b"x-sub", b"alice")]
    assert b"x-sub" in verdict.remove


def test_grpc_clients_get_the_status_envoy_maps_to() -> None:
    refused = Admission(client="c", status=401, body=b"Jwt is missing")
    refused.headers = [(b"www-authenticate", b'Bearer realm="http://h/"')]
    answer = policy_answer(refused, grpc=True)
    fields = dict(answer.headers)
    assert answer.status == 200
    assert fields[b"grpc-status"] == b"16"  # UNAUTHENTICATED
    assert fields[b"grpc-message"] == b"Jwt is missing"
    assert b"www-authenticate" in fields
    forbidden = Admission(client="c", status=403, body=b"Audiences in Jwt are not allowed")
    assert dict(policy_answer(forbidden, grpc=True).headers)[b"grpc-status"] == b"7"
    assert policy_answer(refused, grpc=False).status == 401


def test_a_verified_token_is_not_verified_again_until_keys_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified: list[str] = []
    real = jv.verify_signature

    def counting(token: jv.Token, keys: tuple[jv.Key, ...]) -> jv.Status:
        verified.append(token.alg)
        return real(token, keys)

    monkeypatch.setattr(jv, "verify_signature", counting)
    backend = ir.Backend(name="jwks", endpoints=(ir.Endpoint(address="127.0.0.1", port=1),))
    remote = ir.RemoteJWKS(uri="http://127.0.0.1:1/jwks", backend=backend, host="h", target="/")
    auth = one(local_jwks=None, remote_jwks=remote)
    keys = _Remote(jv.parse_jwks(JWKS))
    good = bearer(token())
    for _ in range(50):
        assert auth.check(good.get, "", keys, NOW).status is jv.OK
    assert len(verified) == 1  # RSA verification is the costly part: once per token
    assert auth.check(good.get, "", keys, NOW + 3600).status is jv.EXPIRED  # time still checked
    keys.held = jv.parse_jwks(JWKS)  # a refetch: the same token is verified again
    assert auth.check(good.get, "", keys, NOW).status is jv.OK
    assert len(verified) == 2


def test_remote_jwks_uris() -> None:
    index = Index(Resources())
    convert = JWTConverter(index, BackendTLSPolicies(index))

    def remote(uri: str) -> ir.RemoteJWKS:
        spec = JWT(providers=(JWTProvider(name="p", remote_jwks=RemoteJWKS(uri=uri)),))
        found = convert("default", spec).providers[0].remote_jwks
        assert found is not None
        return found

    https = remote("https://idp.example.com/keys?v=2")
    assert (https.host, https.target) == ("idp.example.com", "/keys?v=2")
    assert https.backend.endpoints == (
        ir.Endpoint(kind="fqdn", address="idp.example.com", port=443),
    )
    assert https.backend.tls == ir.BackendTLS(hostname="idp.example.com")  # the system trust store
    plain = remote("http://[::1]:8080")
    assert (plain.host, plain.target, plain.backend.tls) == ("[::1]:8080", "/", None)
    assert plain.backend.endpoints[0] == ir.Endpoint(kind="ip", address="::1", port=8080)
    for bad in ("ftp://idp.example.com/keys", "https://user:pw@idp.example.com/keys", "/keys"):
        with pytest.raises(JWTProblem, match="uri"):
            remote(bad)
