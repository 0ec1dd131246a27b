"""SecurityPolicy ``oidc`` through ``edgegw run``, against the OIDC provider in ``oidc_provider``.

One gateway and one provider serve every case (the module's fixture). An HTTP
client follows the login over HTTP/1.1 and over HTTP/2 (prior knowledge):
gateway → provider's authorization endpoint → gateway's callback → the page,
then logs out; WebSocket upgrades and gRPC calls with and without a session; tampered
sessions, forged callbacks and ``denyRedirect``; a token refresh; and the
client secret in no admin answer and no log line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
import trio

from edgegw.policy import oidccookies as oc
from edgegw.translate.oidcconvert import cookie_suffix
from tests.e2e.conftest import ROOT, Echo, Gateway, echoed, free_port, http_gateway, wait_for
from tests.e2e.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.e2e.test_grpc_e2e import Backend, _handlers
from tests.e2e.test_h2_e2e import route, service
from tests.e2e.test_policies_e2e import _ws_status

pytestmark = pytest.mark.e2e


def _policy(issuer: str) -> str:
    return f"""\
---
apiVersion: v1
kind: Secret
metadata: {{name: oidc-client, namespace: default}}
type: Opaque
stringData: {{client-secret: {CLIENT_SECRET}}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: sso, namespace: default}}
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app}}
  - {{group: gateway.networking.k8s.io, kind: GRPCRoute, name: grpc}}
  oidc:
    provider: {{issuer: "{issuer}"}}
    clientID: {CLIENT_ID}
    clientSecret: {{name: oidc-client}}
    scopes: [email]
    redirectURL: "%REQ(x-forwarded-proto)%://%REQ(:authority)%/app/oauth2/callback"
    logoutPath: /app/logout
    forwardAccessToken: true
    denyRedirect:
      headers: [{{name: X-Requested-With, type: Exact, value: XMLHttpRequest}}]
"""


GRPC_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: grpc-backend, port: 80}]}]
"""


def _down(port: int) -> str:
    """A policy whose provider never answers: its discovery keeps failing."""
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: down, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: down}}]
  oidc:
    provider: {{issuer: "http://127.0.0.1:{port}"}}
    clientID: {CLIENT_ID}
    clientSecret: {{name: oidc-client}}
"""


class Env:
    def __init__(self, port: int, gateway: Gateway, provider: Provider) -> None:
        self.port, self.gateway, self.provider = port, gateway, provider
        self.base = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("oidc")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((_handlers(Backend()),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with pytest.MonkeyPatch.context() as mp, Provider() as provider:
        mp.setenv("PYTHONPATH", str(ROOT))
        echo = Echo("a", tmp)
        gateway = Gateway(tmp)
        port = free_port()
        gateway.service("echo", echo)
        service(gateway, "grpc-backend", grpc_port, "kubernetes.io/h2c")
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route-app.yaml", route("app", "echo", "/app"))
        gateway.write("route-grpc.yaml", GRPC_ROUTE)
        gateway.write("route-down.yaml", route("down", "echo", "/down"))
        gateway.write("policy.yaml", _policy(provider.issuer) + _down(free_port()))
        try:
            gateway.start()
            yield Env(port, gateway, provider)
        finally:
            if gateway.process is not None:
                gateway.stop()
            echo.process.stop()
            server.stop(None)


def _client(http2: bool) -> httpx.Client:
    """No cookie jar of its own: the test carries cookies, Secure ones included."""
    return httpx.Client(http1=not http2, http2=http2, timeout=10, follow_redirects=False)


def _set_cookies(rsp: httpx.Response) -> dict[str, str]:
    """name → the whole Set-Cookie value (attributes included)."""
    return {v.partition("=")[0]: v for v in rsp.headers.get_list("set-cookie")}


def _cookie_header(set_cookies: dict[str, str]) -> str:
    """The Cookie header a browser sends back (deleted cookies left out)."""
    return "; ".join(v.partition(";")[0] for v in set_cookies.values() if "=deleted;" not in v)


def _get(client: httpx.Client, url: str, cookie: str = "", **headers: str) -> httpx.Response:
    if cookie:
        headers["cookie"] = cookie
    rsp = client.get(url, headers=headers)
    client.cookies.clear()
    return rsp


def _login(env: Env, client: httpx.Client, url: str) -> tuple[dict[str, str], httpx.Response]:
    """Follow the whole flow; the session's Set-Cookies and the page finally served."""
    first = _get(client, url)
    assert first.status_code == 302, first.text
    login_cookie = _cookie_header(_set_cookies(first))
    with httpx.Client(timeout=10) as browser_to_idp:
        at_idp = browser_to_idp.get(first.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    callback = _get(client, at_idp.headers["location"], login_cookie)
    assert callback.status_code == 302, callback.text
    assert callback.headers["location"] == url
    session = _set_cookies(callback)
    return session, _get(client, url, _cookie_header(session))


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_login_then_logout(env: Env, http2: bool) -> None:
    url = f"{env.base}/app/page?x=1"
    with _client(http2) as client:
        first = _get(client, url)
        assert first.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        location = urlsplit(first.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == (
            f"{env.provider.issuer}/authorize"
        )
        params = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert params["client_id"] == CLIENT_ID
        assert params["scope"] == "email openid"
        assert params["redirect_uri"] == f"{env.base}/app/oauth2/callback"
        assert params["code_challenge_method"] == "S256"
        assert params["nonce"]
        assert oc.decode_state(params["state"]) is not None
        login = next(iter(_set_cookies(first).values()))
        assert login.startswith("OauthNonce-")
        assert "HttpOnly" in login
        assert "Max-Age=600" in login

        session, page = _login(env, client, url)
        assert page.status_code == 200, page.text
        seen = echoed(page.content)
        assert seen["path"] == "/app/page?x=1"
        assert seen["headers"]["authorization"][0].startswith("Bearer at-")
        sent = seen["headers"]["cookie"][0]
        assert "IdToken-" in sent
        assert "=eyJ" in sent
        assert "OauthNonce" not in sent
        assert session.pop(next(k for k in session if k.startswith("OauthNonce-")))
        assert all("secure;HttpOnly" in v for v in session.values())
        ttl = {k.partition("-")[0]: v.partition("Max-Age=")[2][:6] for k, v in session.items()}
        assert ttl == {
            "OauthHMAC": "300;se",
            "OauthExpires": "300;se",
            "AccessToken": "300;se",
            "IdToken": "300;se",
            "RefreshToken": "604800",
        }

        out = _get(client, f"{env.base}/app/logout", _cookie_header(session))
        assert out.status_code == 302
        end = urlsplit(out.headers["location"])
        assert f"{end.scheme}://{end.netloc}{end.path}" == f"{env.provider.issuer}/logout"
        assert parse_qs(end.query)["client_id"] == [CLIENT_ID]
        assert parse_qs(end.query)["post_logout_redirect_uri"] == [f"{env.base}/"]
        deleted = _set_cookies(out)
        assert set(session) <= set(deleted)
        assert all("expires=Thu, 01 Jan 1970" in v for v in deleted.values())


def test_forged_sessions_and_callbacks(env: Env) -> None:
    with _client(False) as client:
        session, page = _login(env, client, f"{env.base}/app")
        assert page.status_code == 200
        cookie = _cookie_header(session)
        expires = next(k for k in session if k.startswith("OauthExpires-"))
        value = session[expires].partition("=")[2].partition(";")[0]
        tampered = cookie.replace(f"{expires}={value}", f"{expires}={int(value) + 3600}")
        assert tampered != cookie
        assert _get(client, f"{env.base}/app", tampered).status_code == 302
        callback = f"{env.base}/app/oauth2/callback"
        assert _get(client, f"{callback}?code=x&state=y").text == "OAuth flow failed."
        forged = oc.encode_state(f"{env.base}/app", "abc.def")
        rsp = _get(client, f"{callback}?code=x&state={forged}", "")
        assert (rsp.status_code, rsp.text) == (401, "OAuth flow failed.")
        rsp = _get(client, f"{callback}?error=access_denied&state={forged}")
        assert rsp.status_code == 401
        ajax = _get(client, f"{env.base}/app", **{"X-Requested-With": "XMLHttpRequest"})
        assert (ajax.status_code, ajax.text) == (401, "OAuth flow failed.")


def _forged_expired_session(env: Env) -> str:
    """An expired session signed with the gateway's own key (read from its state dir)."""
    root = (env.gateway.state / "oidc-hmac.key").read_bytes()
    keys = oc.policy_keys(root, "default/sso")
    refresh = str(env.provider.tokens(None)["refresh_token"])  # one the provider knows
    sfx = _suffix()
    sealed = oc.seal(keys, refresh, True)
    expires = str(int(time.time()) - 5)
    host = f"127.0.0.1:{env.port}"
    mac = oc.session_hmac(keys, host, expires, "", "", sealed)
    return f"OauthExpires-{sfx}={expires}; OauthHMAC-{sfx}={mac}; RefreshToken-{sfx}={sealed}"


def _suffix() -> str:
    return cookie_suffix("default", "sso")


def test_an_expired_session_is_refreshed(env: Env) -> None:
    before = env.provider.hits.get("/token", 0)
    with _client(True) as client:
        rsp = _get(client, f"{env.base}/app/r", _forged_expired_session(env))
        assert rsp.status_code == 200, rsp.text
        seen = echoed(rsp.content)["headers"]
        assert seen["authorization"][0].startswith("Bearer at-")
        assert f"IdToken-{_suffix()}=eyJ" in seen["cookie"][0]  # the new tokens, decrypted
        renewed = _set_cookies(rsp)
        assert any(k.startswith("OauthHMAC-") for k in renewed)
        again = _get(client, f"{env.base}/app/r", _cookie_header(renewed))
        assert again.status_code == 200
    assert env.provider.hits["/token"] == before + 1


async def test_websocket_upgrade_needs_a_session(env: Env) -> None:
    with trio.fail_after(20):
        url = f"ws://127.0.0.1:{env.port}/app/chat"
        assert await _ws_status(url) == 302
        with _client(False) as client:
            session, _ = await trio.to_thread.run_sync(_login, env, client, f"{env.base}/app")
        cookie = _cookie_header(session).encode()
        assert await _ws_status(url, [(b"Cookie", cookie)]) == 101


def test_an_unreachable_provider_fails_closed(env: Env) -> None:
    with _client(False) as client:
        rsp = _get(client, f"{env.base}/down/x")
    assert (rsp.status_code, rsp.text) == (503, "OIDC provider not ready\n")
    process = env.gateway.process
    assert process is not None
    wait_for(lambda: "OIDC discovery http://127.0.0.1:" in process.output(), what="a warning")


def test_grpc_calls_get_no_login_page(env: Env) -> None:
    """As Envoy answers them: the 302 becomes UNKNOWN, a denyRedirect 401 UNAUTHENTICATED."""
    with _client(False) as client:
        session, _ = _login(env, client, f"{env.base}/app")
    cookie = ("cookie", _cookie_header(session))
    with grpc.insecure_channel(f"127.0.0.1:{env.port}") as channel:
        unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Unary")
        with pytest.raises(grpc.RpcError) as info:
            unary(b"hi", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNKNOWN
        ajax = (("x-requested-with", "XMLHttpRequest"),)
        with pytest.raises(grpc.RpcError) as info:
            unary(b"hi", timeout=10, metadata=ajax)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert unary(b"hi", timeout=10, metadata=(cookie,)) == b"hi|"


def test_secrets_stay_secret(env: Env, tmp_path: Path) -> None:
    status = env.gateway.resource("SecurityPolicy", "sso")["status"]
    assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    code, config = env.gateway.admin("/api/config")
    assert code == 200
    assert b"oidc" in config
    assert CLIENT_SECRET.encode() not in config
    root = (env.gateway.state / "oidc-hmac.key").read_bytes()
    assert oc.b64url(root).encode() not in config
    assert (env.gateway.state / "oidc-hmac.key").stat().st_mode & 0o077 == 0
    assert env.gateway.process is not None
    log: Any = env.gateway.process.output()
    assert CLIENT_SECRET not in log
