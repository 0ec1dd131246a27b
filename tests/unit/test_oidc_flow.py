"""SecurityPolicy ``oidc`` without I/O: cookies and keys, state, URLs, the flow's decisions,
token responses and ID tokens."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from edgegw import ir
from edgegw.policy import jwtverify as jv
from edgegw.policy import oidccookies as oc
from edgegw.policy import oidcflow as of
from edgegw.policy.oidc import FAILED, OIDCFlow, OIDCRequest
from edgegw.translate.oidcconvert import redirect_path_of, with_openid

ROOT = b"r" * 32
NOW = 1_700_000_000.0
PROVIDER = ir.OIDCProvider(issuer="https://idp.test")
ENDPOINTS = of.Endpoints("https://idp.test/auth?tenant=a", "https://idp.test/token", "", "")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _config(**fields: Any) -> ir.OIDC:
    base: dict[str, Any] = {
        "name": "default/sso",
        "provider": PROVIDER,
        "client_id": "app",
        "client_secret": b"s3cret",
        "scopes": ("email", "openid"),
        "cookie_suffix": "abcd1234",
        "access_token_cookie": "AccessToken-abcd1234",
        "id_token_cookie": "IdToken-abcd1234",
    }
    return ir.OIDC(**(base | fields))


class _Providers:
    def __init__(self, endpoints: of.Endpoints | None = ENDPOINTS) -> None:
        self._endpoints = endpoints

    def root_key(self) -> bytes:
        return ROOT

    def endpoints(self, provider: ir.OIDCProvider) -> of.Endpoints | None:
        return self._endpoints


def _req(path: str = "/app", query: str = "", **headers: str) -> OIDCRequest:
    lookup = {k.replace("_", "-").encode(): v for k, v in headers.items()}
    return OIDCRequest("https", "app.test", path, query, lookup.get, NOW)


def _session(flow: OIDCFlow, expires_in: float = 300, now: float = NOW) -> str:
    tokens = of.Tokens("at-1", "id-1", "rt-1", expires_in)
    cookies = flow.session_set_cookies(flow.keys(ROOT), "app.test", tokens, now)
    return "; ".join(v.decode().partition(";")[0] for _, v in cookies)


# --- cookies, keys, state ---------------------------------------------------------------


def test_keys_differ_per_policy_and_purpose() -> None:
    a, b = oc.policy_keys(ROOT, "default/a"), oc.policy_keys(ROOT, "default/b")
    assert a.session != b.session
    assert len({a.session, a.csrf, a.nonce, a.pkce}) == 4
    assert oc.policy_keys(ROOT, "default/a").session == a.session


def test_session_hmac_binds_every_part() -> None:
    keys = oc.policy_keys(ROOT, "p")
    mac = oc.session_hmac(keys, "h", "100", "a", "i", "r")
    assert oc.session_valid(keys, "h", "100", ("a", "i", "r"), mac)
    for host, expires, tokens in (
        ("other", "100", ("a", "i", "r")),
        ("h", "101", ("a", "i", "r")),
        ("h", "100", ("a", "i", "x")),
    ):
        assert not oc.session_valid(keys, host, expires, tokens, mac)
    assert not oc.session_valid(oc.policy_keys(ROOT, "q"), "h", "100", ("a", "i", "r"), mac)
    assert not oc.session_valid(keys, "h", "1e9", ("a", "i", "r"), mac)
    assert not oc.session_valid(keys, "h", "100", ("a", "i", "r"), "x" * 1000)


def test_sealed_tokens_open_only_with_their_key() -> None:
    keys = oc.policy_keys(ROOT, "p")
    sealed = oc.seal(keys, "token", True)
    assert sealed != "token"
    assert oc.seal(keys, "token", True) != sealed  # a fresh nonce each time
    assert oc.unseal(keys, sealed, True) == "token"
    assert oc.unseal(oc.policy_keys(ROOT, "q"), sealed, True) is None
    assert oc.unseal(keys, sealed[:-2] + "AA", True) is None
    assert oc.unseal(keys, "!!", True) is None
    assert oc.seal(keys, "token", False) == "token"


def test_csrf_tokens_are_signed() -> None:
    keys = oc.policy_keys(ROOT, "p")
    token = oc.new_csrf(keys)
    assert oc.csrf_valid(keys, token)
    rand, _, mac = token.partition(".")
    assert not oc.csrf_valid(keys, f"{rand}x.{mac}")
    assert not oc.csrf_valid(oc.policy_keys(ROOT, "q"), token)
    assert not oc.csrf_valid(keys, "no-dot")
    assert oc.nonce_for(keys, token) != oc.verifier_for(keys, token)
    assert len(oc.verifier_for(keys, token)) == 43  # RFC 7636: 43 to 128 characters


def test_state_round_trip_and_bounds() -> None:
    state = oc.encode_state("https://app.test/x?y=1", "c.s")
    assert oc.decode_state(state) == ("https://app.test/x?y=1", "c.s")
    assert oc.decode_state("!!!") is None
    assert oc.decode_state(oc.b64url(b"[1]")) is None
    assert oc.decode_state("A" * (oc.MAX_STATE + 1)) is None
    assert oc.decode_state(oc.encode_state("u" * (oc.MAX_URL + 1), "c")) is None


def test_cookie_parsing_is_bounded() -> None:
    wanted = frozenset({"a", "b"})
    assert oc.parse_cookies("a=1; b=2; a=3; c=4", wanted) == {"a": "1", "b": "2"}
    assert oc.parse_cookies("a=" + "x" * (oc.MAX_COOKIE + 1), wanted) == {}
    assert oc.parse_cookies(None, wanted) == {}
    assert oc.strip_cookies("a=1; c=4; b=2", wanted) == "c=4"
    cookie = oc.set_cookie("n", "v", 60, "example.com", "Lax").decode()
    assert cookie == "n=v;path=/;Max-Age=60;secure;HttpOnly;domain=example.com;SameSite=Lax"


# --- URLs -------------------------------------------------------------------------------


def test_redirect_paths_as_envoy_gateway_reads_them() -> None:
    assert redirect_path_of("%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback") == (
        "/oauth2/callback"
    )
    assert redirect_path_of("https://a.test/cb?x=1") == "/cb"
    for bad in ("https://a.test/", "ftp://a.test/cb", "https://a.test", "/cb"):
        assert redirect_path_of(bad) is None
    assert with_openid(("email",)) == ("email", "openid")
    assert with_openid(("openid", "email")) == ("openid", "email")


def test_the_login_redirect_carries_the_flow() -> None:
    flow = OIDCFlow(_config(resources=("api",)))
    outcome = flow.check(_req("/app/x", "y=1"), _Providers())
    assert outcome.status == 302
    headers = dict(outcome.headers)
    location = urlsplit(headers[b"location"].decode())
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://idp.test/auth"
    params = parse_qs(location.query)
    assert params["tenant"] == ["a"]  # the endpoint's own query is kept
    assert params["scope"] == ["email openid"]
    assert params["redirect_uri"] == ["https://app.test/oauth2/callback"]
    assert params["resource"] == ["api"]
    url, csrf = oc.decode_state(params["state"][0]) or ("", "")
    assert url == "https://app.test/app/x?y=1"
    keys = flow.keys(ROOT)
    assert params["nonce"] == [oc.nonce_for(keys, csrf)]
    assert params["code_challenge"] == [oc.challenge_for(oc.verifier_for(keys, csrf))]
    login = f"OauthNonce-abcd1234.{oc.flow_id(csrf)}={csrf};"
    assert headers[b"set-cookie"].decode().startswith(login)


def test_no_endpoints_yet_fails_closed() -> None:
    outcome = OIDCFlow(_config()).check(_req(), _Providers(None))
    assert outcome.status == 503


def test_deny_redirect_and_pass_through() -> None:
    flow = OIDCFlow(
        _config(
            deny_redirect=(("x-requested-with", "Exact", "XMLHttpRequest"),),
            pass_through=(("authorization", "Bearer "),),
        )
    )
    denied = flow.check(_req(x_requested_with="XMLHttpRequest"), _Providers())
    assert (denied.status, denied.body) == (401, FAILED)
    passed = flow.check(_req(authorization="Bearer t"), _Providers())
    assert (passed.status, passed.exchange, passed.add) == (0, None, [])
    assert flow.check(_req(authorization="Basic t"), _Providers()).status == 302


def test_a_valid_session_passes_with_tokens_for_the_backend() -> None:
    flow = OIDCFlow(_config(forward_access_token=True, forward_id_token_header="x-id-token"))
    outcome = flow.check(_req(cookie=_session(flow) + "; theme=dark"), _Providers())
    assert outcome.status == 0
    added = dict(outcome.add)
    assert added[b"authorization"] == b"Bearer at-1"
    assert added[b"x-id-token"] == b"id-1"
    cookie = added[b"cookie"].decode()
    assert "theme=dark" in cookie
    assert "AccessToken-abcd1234=at-1" in cookie  # decrypted, as Envoy forwards them


def test_tampered_or_expired_sessions() -> None:
    flow = OIDCFlow(_config(refresh_token=False))
    cookie = _session(flow)
    tampered = cookie.replace("OauthExpires-abcd1234=", "OauthExpires-abcd1234=9")
    assert flow.check(_req(cookie=tampered), _Providers()).status == 302
    other_host = OIDCRequest("https", "evil.test", "/app", "", {b"cookie": cookie}.get, NOW)
    assert flow.check(other_host, _Providers()).status == 302
    expired = _session(flow, expires_in=10, now=NOW - 60)
    assert flow.check(_req(cookie=expired), _Providers()).status == 302


def test_a_new_session_deletes_the_cookies_of_tokens_not_sent() -> None:
    flow = OIDCFlow(_config())
    tokens = of.Tokens("at-2", "", "", 60)
    cookies = [v.decode() for _, v in flow.session_set_cookies(flow.keys(ROOT), "h", tokens, NOW)]
    assert any(c.startswith("IdToken-abcd1234=deleted;") for c in cookies)
    assert any(c.startswith("RefreshToken-abcd1234=deleted;") for c in cookies)


def test_an_expired_session_with_a_refresh_token_asks_for_a_refresh() -> None:
    flow = OIDCFlow(_config())
    outcome = flow.check(_req(cookie=_session(flow, expires_in=10, now=NOW - 60)), _Providers())
    assert outcome.exchange is not None
    assert (outcome.exchange.grant, outcome.exchange.refresh) == ("refresh_token", "rt-1")


def _callback(flow: OIDCFlow, url: str = "https://app.test/app") -> tuple[str, str]:
    """(query, login cookie) of a callback as the provider sends the browser back."""
    csrf = oc.new_csrf(flow.keys(ROOT))
    query = f"code=c0de&state={oc.encode_state(url, csrf)}"
    return query, f"OauthNonce-abcd1234.{oc.flow_id(csrf)}={csrf}"


def test_the_callback_asks_for_the_code_exchange() -> None:
    flow = OIDCFlow(_config())
    query, login = _callback(flow)
    outcome = flow.check(_req("/oauth2/callback", query, cookie=login), _Providers())
    exchange = outcome.exchange
    assert exchange is not None
    assert (exchange.code, exchange.url) == ("c0de", "https://app.test/app")
    assert exchange.redirect_uri == "https://app.test/oauth2/callback"
    csrf = login.partition("=")[2]
    assert exchange.verifier == oc.verifier_for(flow.keys(ROOT), csrf)


def test_two_logins_at_once_both_complete() -> None:
    """Two tabs: each login has its own cookie, as Envoy's per-flow names."""
    flow = OIDCFlow(_config())
    (query_a, login_a), (query_b, login_b) = _callback(flow), _callback(flow)
    both = f"{login_a}; {login_b}; theme=dark"
    for query in (query_a, query_b):
        outcome = flow.check(_req("/oauth2/callback", query, cookie=both), _Providers())
        assert outcome.exchange is not None
    session = _session(flow)
    passed = flow.check(_req(cookie=f"{session}; {login_a}; theme=dark"), _Providers())
    assert "OauthNonce" not in dict(passed.add)[b"cookie"].decode()


@pytest.mark.parametrize(
    "case", ["no-cookie", "other-cookie", "error", "open-redirect", "loop", "forged-csrf"]
)
def test_forged_callbacks_get_401(case: str) -> None:
    flow = OIDCFlow(_config())
    query, login = _callback(flow)
    if case == "no-cookie":
        login = ""
    elif case == "other-cookie":
        login = _callback(flow)[1]
    elif case == "error":
        query += "&error=access_denied"
    elif case == "open-redirect":
        query, login = _callback(flow, "https://evil.test/")
    elif case == "loop":
        query, login = _callback(flow, "https://app.test/oauth2/callback")
    else:
        forged = "abc.def"
        query = f"code=c&state={oc.encode_state('https://app.test/', forged)}"
        login = f"OauthNonce-abcd1234.{oc.flow_id(forged)}={forged}"
    outcome = flow.check(_req("/oauth2/callback", query, cookie=login), _Providers())
    assert (outcome.status, outcome.body, outcome.exchange) == (401, FAILED, None)


def test_logout_clears_every_cookie_and_ends_the_provider_session() -> None:
    flow = OIDCFlow(_config())
    ends = of.Endpoints("https://idp.test/auth", "https://idp.test/token", "https://idp.test/end")
    outcome = flow.check(_req("/logout", cookie=_session(flow)), _Providers(ends))
    assert outcome.status == 302
    location = urlsplit(dict(outcome.headers)[b"location"].decode())
    params = parse_qs(location.query)
    assert params["id_token_hint"] == ["id-1"]
    assert params["post_logout_redirect_uri"] == ["https://app.test/"]
    deleted = [v.decode() for n, v in outcome.headers if n == b"set-cookie"]
    assert len(deleted) == 6
    assert all("=deleted;" in v for v in deleted)
    plain = flow.check(_req("/logout"), _Providers())
    assert dict(plain.headers)[b"location"] == b"https://app.test/"


# --- the provider's answers -------------------------------------------------------------


def test_token_responses() -> None:
    tokens = of.parse_tokens(200, b'{"access_token":"a","id_token":"i","expires_in":60}', 0)
    assert tokens == of.Tokens("a", "i", "", 60.0)
    assert of.parse_tokens(200, b'{"access_token":"a","id_token":"i"}', 30).expires_in == 30
    for status, body in (
        (400, b'{"error":"invalid_grant"}'),
        (200, b'{"access_token":"a","id_token":"i"}'),  # no expires_in, no defaultTokenTTL
        (200, b'{"id_token":"i","expires_in":60}'),
        (200, b'{"access_token":"a","expires_in":60}'),  # OIDC: an ID token is required
        (200, b"[]"),
        (200, b"x" * (of.MAX_DOCUMENT + 1)),
        (200, b'{"access_token":"' + b"a" * (of.MAX_TOKEN + 1) + b'","id_token":"i"}'),
    ):
        with pytest.raises(of.FlowError):
            of.parse_tokens(status, body, 0)


def test_token_request_uses_basic_auth() -> None:
    body, basic = of.token_request(_config(client_secret=b"a:b&c"), [("grant_type", "x")])
    assert body == b"grant_type=x"
    assert basic == b"Basic YXBwOmElM0FiJTI2Yw=="  # app:a%3Ab%26c, RFC 6749 2.3.1


def _id_token(**claims: Any) -> str:
    body = {"iss": "https://idp.test", "aud": "app", "exp": NOW + 60, "nonce": "n"} | claims
    return pyjwt.encode(body, KEY, algorithm="RS256", headers={"kid": "k1"})


def test_id_tokens_are_checked() -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key())) | {"kid": "k1"}
    keys = jv.parse_jwks(json.dumps({"keys": [jwk]}))
    config = _config()
    of.check_id_token(config, _id_token(), "n", keys, NOW)
    of.check_id_token(config, _id_token(nonce="other"), None, keys, NOW)  # a refresh
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode({"iss": "https://idp.test", "aud": "app"}, other, algorithm="RS256")
    for token in (
        _id_token(nonce="other"),
        _id_token(iss="https://evil.test"),
        _id_token(aud="someone-else"),
        _id_token(exp=NOW - 3600),
        forged,
        "not.a.token",
    ):
        with pytest.raises(of.FlowError):
            of.check_id_token(config, token, "n", keys, NOW)


def test_discovery_documents() -> None:
    body = (
        b'{"issuer":"https://idp.test","authorization_endpoint":"https://idp.test/a",'
        b'"token_endpoint":"https://idp.test/t","jwks_uri":"https://idp.test/k"}'
    )
    found = of.parse_discovery(body, "https://idp.test")
    assert found == of.Endpoints(
        "https://idp.test/a", "https://idp.test/t", "", "https://idp.test/k"
    )
    with pytest.raises(of.FlowError):
        of.parse_discovery(body, "https://other.test")
    with pytest.raises(of.FlowError):
        of.parse_discovery(b'{"issuer":"https://idp.test"}', "https://idp.test")
    given = ir.OIDCProvider(issuer="i", authorization_endpoint="https://x/a", token_endpoint="t")
    assert of.merged(given, None) == of.Endpoints("https://x/a", "t", "")
    assert of.merged(PROVIDER, None) is None
    assert of.merged(given, found) == of.Endpoints("https://x/a", "t", "", "https://idp.test/k")


def test_the_flow_is_cheap_for_a_logged_in_user() -> None:
    flow = OIDCFlow(_config())
    request = _req(cookie=_session(flow))
    providers = _Providers()
    start = time.process_time()
    for _ in range(1000):
        assert flow.check(request, providers).status == 0
    assert time.process_time() - start < 1.0  # ~20 µs each; a generous ceiling
