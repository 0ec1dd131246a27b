"""What each Envoy Gateway policy costs edgegw per request, against the same route without it.

Run through `bench/policies` (see bench/README.md). One nginx upstream (1 worker) serves a
100-byte text body, an 8 KiB HTML page and a forward-auth location; one `edgegw run --workers
1` holds one HTTPRoute per case, selected by Host header, each under the policy YAML a user
would write. Every case is first checked to really act (a compressed answer, a 401 without
credentials, a 403 from a sibling route whose allowlist leaves the client out...), so a
misconfigured case fails instead of looking cheap. Then each case's wrk run sits between two
runs of its baseline (the same body, no policy), and its cost is its edgegw CPU time per
request minus the mean of those two: drift on a busy machine cannot favour either side.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import brotli
import jwt as pyjwt
import zstandard
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from lib import (
    ROOT,
    BenchError,
    Procs,
    WrkResult,
    ensure_running,
    free_port,
    http_get,
    machine_info,
    pinned,
    process_tree_cpu_s,
    raise_nofile_limit,
    run_wrk,
    signals_raise,
    start_nginx,
    update_results_section,
    wait_until,
)

SMALL = ("edgegw bench upstream, a fixed body of one hundred bytes; " * 2)[:99] + "\n"
assert len(SMALL) == 100
DOMAIN = "bench.example.com"
CONTROLLER = "edgegw.io/gateway-controller"
USER, PASSWORD, API_KEY = "bench", "bench-password", "bench-api-key-0123456789"
SESSION = "session=bench-0123456789abcdef"
ORIGIN = "https://app.example.com"
HTML_SIZE = 8192
PAGE = "/page.html"
APPS = [
    "jellyfin", "home-assistant", "paperless", "immich", "vaultwarden", "grafana",
    "prometheus", "nextcloud", "gitea", "sonarr", "radarr", "prowlarr", "frigate",
    "mealie", "authelia", "uptime-kuma", "syncthing", "audiobookshelf", "zigbee2mqtt",
]  # fmt: skip


def html_page() -> str:
    """An 8 KiB dashboard page: markup repeats, names and numbers vary, as real HTML does."""
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Services - homelab</title>\n"
        '<link rel="stylesheet" href="/static/css/app.3f9a2c.css">\n'
        '<script defer src="/static/js/app.81b0e4.js"></script>\n</head>\n<body>\n'
        '<header class="topbar"><a class="brand" href="/">homelab</a>\n<nav>\n'
        + "".join(f'  <a class="nav-link" href="/apps/{app}">{app}</a>\n' for app in APPS[:6])
        + '</nav></header>\n<main class="container">\n<h1>Services</h1>\n'
        '<table class="table services">\n<thead><tr><th>Name</th><th>Status</th>'
        "<th>Uptime</th><th>Version</th><th>Requests</th></tr></thead>\n<tbody>\n"
    )
    tail = "</tbody>\n</table>\n</main>\n<footer>Rendered by the homelab dashboard.</footer>\n"
    tail += "</body>\n</html>\n"
    rows: list[str] = []
    i = 0
    while True:
        app = APPS[i % len(APPS)]
        state = ("running", "ok") if i % 7 else ("degraded", "warn")
        row = (
            f'<tr class="row" id="svc-{i}"><td class="name"><a href="/apps/{app}">{app}-{i // 19}'
            f'</a></td><td class="status {state[1]}">{state[0]}</td>'
            f'<td class="uptime">{(i * 37) % 90 + 1} days</td>'
            f'<td class="version">v{i % 4}.{(i * 7) % 13}.{(i * 11) % 9}</td>'
            f'<td class="num">{(i * 7919) % 100000:,}</td></tr>\n'
        )
        if len(head) + sum(map(len, rows)) + len(row) + len(tail) > HTML_SIZE:
            break
        rows.append(row)
        i += 1
    spare = HTML_SIZE - len(head) - sum(map(len, rows)) - len(tail)
    indent, extra = divmod(spare, len(rows))  # indent the rows to fill the page exactly
    rows = [" " * (indent + (n < extra)) + r for n, r in enumerate(rows)]
    return head + "".join(rows) + tail


# ---------------------------------------------------------------- cases


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    label: str
    baseline: str  # key of the no-policy case with the same body ("" for a baseline)
    host: str
    path: str = "/"
    headers: tuple[str, ...] = ()
    listener: str = "http"
    encoding: str = ""  # the Content-Encoding a compression case must answer with


def _case(key: str, label: str, baseline: str, *headers: str, **kw: Any) -> Case:
    return Case(key, label, baseline, f"{key}.{DOMAIN}", headers=headers, **kw)


def _compressed(key: str, name: str, encoding: str) -> Case:
    header = f"Accept-Encoding: {encoding}"
    return _case(key, f"compression {name}", "html", header, path=PAGE, encoding=encoding)


BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWT_ISSUER = "https://idp.bench.example.com"


def _jwt_token(key: rsa.RSAPrivateKey = JWT_KEY) -> str:
    """An RS256 token a day long; one token, as a client reuses its access token."""
    claims = {"iss": JWT_ISSUER, "sub": USER, "exp": int(datetime.now(UTC).timestamp()) + 86400}
    return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


JWT_TOKEN = _jwt_token()
CASES = [
    _case("plain", "no policy, 100 B body", ""),
    _case("basic", "SecurityPolicy basicAuth ({SHA})", "plain", f"Authorization: {BASIC}"),
    _case("extauth", "SecurityPolicy extAuth.http (forward auth)", "plain", f"Cookie: {SESSION}"),
    _case("authz", "SecurityPolicy authorization (clientCIDRs)", "plain"),
    _case("apikey", "SecurityPolicy apiKeyAuth", "plain", f"x-api-key: {API_KEY}"),
    _case(
        "jwt",
        "SecurityPolicy jwt (RS256, local JWKS)",
        "plain",
        f"Authorization: Bearer {JWT_TOKEN}",
    ),
    _case("cors", "SecurityPolicy cors (GET with Origin)", "plain", f"Origin: {ORIGIN}"),
    _case("ratelimit", "BackendTrafficPolicy rateLimit Local", "plain"),
    _case(
        "xff",
        "ClientTrafficPolicy clientIPDetection XFF",
        "plain",
        "X-Forwarded-For: 203.0.113.9",
        listener="xff",
    ),
    Case("html", "no policy, 8 KiB HTML", "", f"plain.{DOMAIN}", PAGE, ("Accept-Encoding: gzip",)),
    _compressed("gzip", "Gzip", "gzip"),
    _compressed("brotli", "Brotli", "br"),
    _compressed("zstd", "Zstd", "zstd"),
]
BY_KEY = {case.key: case for case in CASES}


# ---------------------------------------------------------------- config (user YAML)


def _route(name: str, listener: str = "http", backend: str = "upstream") -> str:
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: {listener}}}]
  hostnames: ["{name}.{DOMAIN}"]
  rules:
    - backendRefs: [{{name: {backend}, port: 80}}]
"""


def _policy(kind: str, name: str, body: str) -> str:
    return f"""---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      name: {name}
{body}"""


def _authz(cidr: str) -> str:
    return f"""  authorization:
    defaultAction: Deny
    rules:
      - name: lan
        action: Allow
        principal:
          clientCIDRs: ["{cidr}"]
"""


def _jwt() -> str:
    jwk = {**json.loads(RSAAlgorithm.to_jwk(JWT_KEY.public_key())), "kid": "bench"}
    return f"""  jwt:
    providers:
      - name: bench
        issuer: {JWT_ISSUER}
        localJWKS: {{type: Inline, inline: '{json.dumps({"keys": [jwk]})}'}}
        claimToHeaders: [{{header: x-user, claim: sub}}]
"""


def _ratelimit(requests: int, unit: str) -> str:
    return f"""  rateLimit:
    type: Local
    local:
      rules:
        - clientSelectors:
            - sourceCIDR: {{type: Distinct, value: 127.0.0.0/8}}
          limit: {{requests: {requests}, unit: {unit}}}
"""


def infrastructure_yaml(http_port: int, xff_port: int, upstream_port: int) -> str:
    """GatewayClass, a Gateway with two HTTP listeners, the upstream and auth Services."""
    services = "".join(
        f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {upstream_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {upstream_port}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
"""
        for name in ("upstream", "authelia")
    )
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw-bench}}
spec: {{controllerName: {CONTROLLER}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: edgegw-bench
  listeners:
    - {{name: http, protocol: HTTP, port: {http_port}}}
    - {{name: xff, protocol: HTTP, port: {xff_port}}}
{services}"""


def secrets_yaml() -> str:
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: bench-users, namespace: default}}
stringData:
  .htpasswd: |
    {USER}:{{SHA}}{digest}
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-api-keys, namespace: default}}
stringData: {{{USER}: {API_KEY}}}
"""


SECURITY = "SecurityPolicy"
TRAFFIC = "BackendTrafficPolicy"
POLICIES: list[tuple[str, str, str]] = [  # kind, route name, spec body
    (SECURITY, "basic", "  basicAuth: {users: {name: bench-users}}\n"),
    (
        SECURITY,
        "extauth",
        """  extAuth:
    http:
      backendRefs: [{name: authelia, port: 80}]
      path: /api/authz/ext-authz/
      headersToBackend: [Remote-User, Remote-Groups, Remote-Email, Remote-Name]
    headersToExtAuth: [accept, cookie, authorization, x-forwarded-proto]
    failOpen: false
""",
    ),
    (SECURITY, "authz", _authz("127.0.0.0/8")),
    (SECURITY, "authz-check", _authz("192.0.2.0/24")),  # leaves the client out: 403
    (
        SECURITY,
        "apikey",
        """  apiKeyAuth:
    credentialRefs: [{name: bench-api-keys}]
    extractFrom: [{headers: [x-api-key]}]
""",
    ),
    (SECURITY, "jwt", _jwt()),
    (
        SECURITY,
        "cors",
        """  cors:
    allowOrigins: ["https://*.example.com"]
    allowMethods: [GET, POST]
    allowHeaders: [content-type, authorization]
    maxAge: 10m
""",
    ),
    (TRAFFIC, "ratelimit", _ratelimit(1_000_000, "Second")),
    (TRAFFIC, "ratelimit-check", _ratelimit(2, "Hour")),  # the same rule, tripped at once
    (SECURITY, "xff-check", _authz("203.0.113.0/24")),  # only the forwarded-for client
    (TRAFFIC, "gzip", "  compression: [{type: Gzip}]\n"),
    (TRAFFIC, "brotli", "  compression: [{type: Brotli}]\n"),
    (TRAFFIC, "zstd", "  compression: [{type: Zstd}]\n"),
]
CLIENT_POLICY = """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: xff, namespace: default}
spec:
  targetRefs:
    - {group: gateway.networking.k8s.io, kind: Gateway, name: bench, sectionName: xff}
  clientIPDetection:
    xForwardedFor:
      trustedCIDRs: [127.0.0.0/8]
"""


def routes_yaml() -> str:
    names = [c.key for c in CASES if c.key != "html"]
    names += ["authz-check", "ratelimit-check", "xff-check"]
    routes = "".join(_route(n, "xff" if n.startswith("xff") else "http") for n in names)
    policies = "".join(_policy(kind, name, body) for kind, name, body in POLICIES)
    return routes + policies + CLIENT_POLICY


# ---------------------------------------------------------------- run state


@dataclass(frozen=True, slots=True)
class Sample:
    wrk: WrkResult
    cpu_us: float  # edgegw CPU µs per request over the measured run
    index: int  # position in the run order


@dataclass
class Run:
    args: argparse.Namespace
    procs: Procs
    cpus: tuple[str | None, str | None, str | None, str]  # edgegw, upstream, wrk, note
    ports: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of one response body
    errors: dict[str, str] = field(default_factory=dict)
    edgegw_pid: int = 0
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)  # at the start

    @property
    def workdir(self) -> Path:
        return self.procs.workdir

    def attempt(self, key: str, action: Callable[[], object]) -> bool:
        """Run one step; on failure print and remember the error and return False."""
        try:
            action()
            return True
        except (BenchError, OSError, ValueError) as exc:
            self.errors[key] = str(exc).strip()
            print(f"  ERROR in {key}: {exc}", flush=True)
        except Exception as exc:
            self.errors[key] = f"{type(exc).__name__}: {exc}"
            print(f"  ERROR in {key}:", flush=True)
            traceback.print_exc()
        return False

    def url(self, case: Case) -> str:
        return f"http://127.0.0.1:{self.ports[case.listener]}{case.path}"

    def wrk_headers(self, case: Case) -> list[str]:
        return [f"Host: {case.host}", *case.headers]


def cpu_plan(pin: bool) -> tuple[str | None, str | None, str | None, str]:
    """CPUs for edgegw, the upstream and wrk, as bench/http1 decides (none below 4 CPUs)."""
    n = os.cpu_count() or 1
    if not pin:
        return None, None, None, "no CPU pinning (--no-pin)"
    if n < 4:
        return None, None, None, f"no CPU pinning ({n} CPUs: too few to separate)"
    return "0", "1", f"2-{n - 1}", f"edgegw on CPU 0, upstream on CPU 1, wrk on CPUs 2-{n - 1}"


# ---------------------------------------------------------------- processes


def start_upstream(run: Run) -> None:
    """nginx: the two bodies, /whoami (echoes Remote-User) and an Authelia-like auth location."""
    port = run.ports["upstream"] = free_port()
    docroot = run.workdir / "docroot"
    docroot.mkdir()
    (docroot / "page.html").write_text(html_page())
    block = f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = / {{ default_type text/plain; return 200 "{SMALL.strip()}\\n"; }}
        location = /page.html {{ default_type text/html; root {docroot}; }}
        location = /whoami {{
            default_type text/plain;
            return 200 "remote-user=$http_remote_user\\n";
        }}
        location /api/authz/ext-authz/ {{
            if ($http_cookie !~ "{SESSION}") {{ return 302 "https://auth.{DOMAIN}/"; }}
            add_header Remote-User {USER};
            return 200 "";
        }}
    }}"""
    start_nginx(run.procs, "upstream", block, [port], run.cpus[1])
    status, body = http_get(port)
    if status != 200 or body != SMALL.encode():
        raise BenchError(f"upstream answered {status} {body[:80]!r}")


def start_edgegw(run: Run) -> None:
    """`edgegw run --workers 1` on the config; returns once /readyz and the plain route are 200."""
    run.ports.update(http=free_port(), xff=free_port(), admin=free_port())
    config = run.workdir / "edgegw-config"
    config.mkdir()
    infra = infrastructure_yaml(run.ports["http"], run.ports["xff"], run.ports["upstream"])
    (config / "gateway.yaml").write_text(infra)
    (config / "secrets.yaml").write_text(secrets_yaml())
    (config / "routes.yaml").write_text(routes_yaml())
    argv = [sys.executable, "-m", "edgegw", "run", "-c", str(config), "--workers", "1"]
    argv += ["--default-address", "127.0.0.1", "--admin", f"127.0.0.1:{run.ports['admin']}"]
    argv += ["--state-dir", str(run.workdir / "edgegw-state"), "--log-level", "warning"]
    proc = run.procs.start("edgegw", pinned(argv, run.cpus[0]), cwd=ROOT)
    run.edgegw_pid = proc.pid

    def ready() -> bool:
        ensure_running(run.procs, "edgegw", proc)
        return http_get(run.ports["admin"], "/readyz")[0] == 200

    def routed() -> bool:
        ensure_running(run.procs, "edgegw", proc)
        return http_get(run.ports["http"], host=f"plain.{DOMAIN}")[0] == 200

    try:
        wait_until(ready, run.args.startup_timeout, "edgegw /readyz = 200", interval=0.1)
        wait_until(routed, 10, "edgegw to route the plain case", interval=0.1)
    except BaseException:
        print(f"  last output of edgegw:\n{run.procs.log_tail('edgegw')}", flush=True)
        raise


# ---------------------------------------------------------------- checks before measuring


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names; the last of repeated ones
    body: bytes
    size_download: int


def curl(run: Run, case: Case, *extra: str, host: str = "", path: str = "") -> Answer:
    """One request with curl (the case's headers unless `extra` replaces them: pass "-")."""
    headers = list(case.headers) if "-" not in extra else []
    argv = ["curl", "-sS", "--max-time", "5", "-H", f"Host: {host or case.host}"]
    for header in headers:
        argv += ["-H", header]
    body_file, head_file = run.workdir / "curl.body", run.workdir / "curl.head"
    argv += [a for a in extra if a != "-"]
    argv += ["-o", str(body_file), "-D", str(head_file), "-w", "%{http_code} %{size_download}"]
    port = run.ports[case.listener]
    argv.append(f"http://127.0.0.1:{port}{path or case.path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    if done.returncode != 0:
        raise BenchError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    status, size = (int(x) for x in done.stdout.split())
    head = {}
    for line in head_file.read_text(errors="replace").splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            head[name.strip().lower()] = value.strip()
    return Answer(status, head, body_file.read_bytes(), size)


def expect(what: str, ok: bool, got: object) -> None:
    if not ok:
        raise BenchError(f"{what}; got {got!r}"[:300])


def decoded(answer: Answer) -> bytes:
    encoding = answer.headers.get("content-encoding", "")
    if encoding == "gzip":
        return gzip.decompress(answer.body)
    if encoding == "br":
        return bytes(brotli.decompress(answer.body))
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(answer.body)
    return answer.body


def verify_common(run: Run, case: Case) -> Answer:
    """The measured request itself: 200 with the upstream's body, decoded as the client would."""
    answer = curl(run, case)
    expect(f"{case.key}: status 200", answer.status == 200, answer.status)
    want = html_page().encode() if case.path == PAGE else SMALL.encode()
    expect(f"{case.key}: the upstream's body", decoded(answer) == want, answer.body[:60])
    got = answer.headers.get("content-encoding", "")
    expect(f"{case.key}: content-encoding {case.encoding or 'none'}", got == case.encoding, got)
    return answer


def verify_auth(run: Run, case: Case) -> None:
    """The policy-specific proof that the case's policy acts."""
    check = CHECKS.get(case.key)
    if check is not None:
        check(run, case)


def _check_basic(run: Run, case: Case) -> None:
    code = curl(run, case, "-").status
    expect("basic: 401 without credentials", code == 401, code)
    code = curl(run, case, "-", "-u", f"{USER}:wrong").status
    expect("basic: 401 with a wrong password", code == 401, code)


def _check_extauth(run: Run, case: Case) -> None:
    code = curl(run, case, "-").status
    expect("extauth: the auth server's 302 without a session", code == 302, code)
    seen = curl(run, case, "-H", "Remote-User: mallory", path="/whoami").body
    want = b"remote-user=bench\n"
    expect("extauth: upstream sees Remote-User from the auth server", seen == want, seen)


def _check_authz(run: Run, case: Case) -> None:
    code = curl(run, case, host=f"authz-check.{DOMAIN}").status
    expect("authz-check (allowlist 192.0.2.0/24): 403 for 127.0.0.1", code == 403, code)


def _check_apikey(run: Run, case: Case) -> None:
    code = curl(run, case, "-").status
    expect("apikey: 401 without a key", code == 401, code)
    code = curl(run, case, "-", "-H", "x-api-key: wrong").status
    expect("apikey: 401 with a wrong key", code == 401, code)


def _check_jwt(run: Run, case: Case) -> None:
    code = curl(run, case, "-").status
    expect("jwt: 401 without a token", code == 401, code)
    forged = _jwt_token(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    code = curl(run, case, "-", "-H", f"Authorization: Bearer {forged}").status
    expect("jwt: 401 for a token another key signed", code == 401, code)


def _check_cors(run: Run, case: Case) -> None:
    allowed = curl(run, case).headers.get("access-control-allow-origin")
    expect("cors: access-control-allow-origin on a GET with Origin", allowed == ORIGIN, allowed)
    other = curl(run, case, "-", "-H", "Origin: https://evil.test").headers
    refused = "access-control-allow-origin" not in other
    expect("cors: no allow-origin for another origin", refused, other)


def _check_ratelimit(run: Run, case: Case) -> None:
    codes = [curl(run, case, host=f"ratelimit-check.{DOMAIN}").status for _ in range(3)]
    expect("ratelimit-check (2 an hour): 200, 200, 429", codes == [200, 200, 429], codes)


def _check_xff(run: Run, case: Case) -> None:
    host = f"xff-check.{DOMAIN}"
    code = curl(run, case, host=host).status
    what = "xff-check (allowlist 203.0.113.0/24): 200 for X-Forwarded-For 203.0.113.9"
    expect(what, code == 200, code)
    code = curl(run, case, "-", "-H", "X-Forwarded-For: 198.51.100.7", host=host).status
    expect("xff-check: 403 for X-Forwarded-For 198.51.100.7", code == 403, code)


def _check_compression(run: Run, case: Case) -> None:
    plain = curl(run, case, "-")
    identity = "content-encoding" not in plain.headers
    expect(f"{case.key}: no encoding without Accept-Encoding", identity, plain.headers)


CHECKS: dict[str, Callable[[Run, Case], None]] = {
    "basic": _check_basic,
    "extauth": _check_extauth,
    "authz": _check_authz,
    "apikey": _check_apikey,
    "jwt": _check_jwt,
    "cors": _check_cors,
    "ratelimit": _check_ratelimit,
    "xff": _check_xff,
    "gzip": _check_compression,
    "brotli": _check_compression,
    "zstd": _check_compression,
}

# The admin's /metrics counter that the measured request itself must move.
DECISIONS = {
    "basic": ("security", "basic"),
    "extauth": ("extAuth", "extauth"),
    "authz": ("security", "authz"),
    "apikey": ("security", "apikey"),
    "jwt": ("security", "jwt"),
    "cors": ("security", "cors"),
}


def admin_json(run: Run, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", run.ports["admin"], timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return json.loads(body) if path.startswith("/api/") else body.decode()


def decision_count(run: Run, kind: str, name: str) -> float:
    text = admin_json(run, "/metrics")
    labels = f'kind="{kind}",policy="default/{name}",outcome="allow"'
    match = re.search(rf"^edgegw_policy_decisions_total\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def policy_accepted(run: Run) -> dict[str, str]:
    """Route name (or listener for the ClientTrafficPolicy) → why not Accepted; empty: all are."""
    problems: dict[str, str] = {}
    kinds = {SECURITY, TRAFFIC, "ClientTrafficPolicy"}
    found = set()
    for res in admin_json(run, "/api/status")["resources"]:
        if res["kind"] not in kinds:
            continue
        name = res["metadata"]["name"]
        found.add(name)
        ancestors = res.get("status", {}).get("ancestors", [])
        conditions = [c for a in ancestors for c in a.get("conditions", [])]
        accepted = [c for c in conditions if c.get("type") == "Accepted"]
        if not accepted or any(c.get("status") != "True" for c in accepted):
            problems[name] = f"{res['kind']} {name} not Accepted: {conditions}"
    for _, name, _ in POLICIES:
        if name not in found:
            problems[name] = f"policy {name} missing from /api/status"
    return problems


def verify_case(run: Run, case: Case, problems: dict[str, str]) -> None:
    """Everything that must hold before a case is measured; BenchError names the first miss."""
    for name in (case.key, f"{case.key}-check"):
        if name in problems:
            raise BenchError(problems[name])
    if case.listener == "xff" and "xff" in problems:
        raise BenchError(problems["xff"])
    decision = DECISIONS.get(case.key)
    before = decision_count(run, *decision) if decision else 0.0
    answer = verify_common(run, case)
    if decision and decision_count(run, *decision) <= before:
        raise BenchError(f"{case.key}: no allow decision counted for the measured request")
    verify_auth(run, case)
    run.sizes[case.key] = answer.size_download


# ---------------------------------------------------------------- measuring


def order(keys: list[str]) -> list[str]:
    """Each body's baseline first, then each case followed by the baseline again."""
    sequence: list[str] = []
    for base in (c.key for c in CASES if not c.baseline):
        cases = [k for k in keys if BY_KEY[k].baseline == base]
        if base not in keys:
            continue
        sequence.append(base)
        for key in cases:
            sequence += [key, base]
    return sequence


def measure(run: Run, key: str, index: int) -> None:
    case = BY_KEY[key]
    url, headers = run.url(case), run.wrk_headers(case)
    run_wrk(url, min(1.0, run.args.duration), headers=headers, cpus=run.cpus[2])  # warm-up
    before = process_tree_cpu_s(run.edgegw_pid)
    result = run_wrk(url, run.args.duration, headers=headers, cpus=run.cpus[2])
    cpu_us = (process_tree_cpu_s(run.edgegw_pid) - before) / result.requests * 1e6
    run.samples.setdefault(key, []).append(Sample(result, cpu_us, index))
    extra = f", {result.socket_errors} socket errors" if result.socket_errors else ""
    print(
        f"  {case.label:<44} {result.rps:>8,.0f} req/s  p99 {result.p99_ms:6.2f} ms"
        f"  {cpu_us:6.1f} CPU us/req{extra}",
        flush=True,
    )


def delta_us(run: Run, key: str) -> float | None:
    """The case's CPU µs/request minus the mean of the baseline runs just before and after it."""
    case = BY_KEY[key]
    if not case.baseline or key not in run.samples:
        return None
    sample = run.samples[key][0]
    around = [
        s.cpu_us
        for s in run.samples.get(case.baseline, [])
        if s.index in (sample.index - 1, sample.index + 1)
    ]
    if not around:
        return None
    return sample.cpu_us - sum(around) / len(around)


# ---------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def size_cell(run: Run, case: Case) -> str:
    size = run.sizes.get(case.key)
    if size is None:
        return ""
    if case.encoding and size:
        return f"{size:,} ({HTML_SIZE / size:.1f}:1)"
    return f"{size:,}"


def row(run: Run, case: Case) -> str:
    samples = run.samples.get(case.key)
    if not samples:
        reason = run.errors.get(case.key, "not measured").splitlines()[0][:120]
        return f"| {case.label} | FAIL: {reason} | | | | |"
    rps = _mean([s.wrk.rps for s in samples])
    p99 = _mean([s.wrk.p99_ms for s in samples])
    cpus = [s.cpu_us for s in samples]
    if case.baseline:
        delta = delta_us(run, case.key)
        cells = [f"{cpus[0]:.1f}", "" if delta is None else f"{delta:+.1f}"]
    else:
        spread = f"; first {cpus[0]:.1f}, last {cpus[-1]:.1f}" if len(cpus) > 1 else ""
        runs = f"mean of {len(cpus)}" if len(cpus) > 1 else "1 run"
        cells = [f"{_mean(cpus):.1f} ({runs}{spread})", "baseline"]
    return (
        f"| {case.label} | {rps:,.0f} | {p99:.2f} | {cells[0]} | {cells[1]} "
        f"| {size_cell(run, case)} |"
    )


def table(run: Run) -> str:
    lines = [
        "| case | req/s | p99 ms | edgegw CPU µs/request | Δ µs vs baseline | bytes/response |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [row(run, case) for case in CASES]
    return "\n".join(lines)


def noise_text(run: Run) -> str:
    lines = []
    for base in (c for c in CASES if not c.baseline):
        cpus = [s.cpu_us for s in run.samples.get(base.key, [])]
        if len(cpus) > 1:
            spread = max(cpus) - min(cpus)
            lines.append(
                f"- {base.label}: {len(cpus)} baseline runs from {min(cpus):.1f} to "
                f"{max(cpus):.1f} µs/request; a Δ smaller than that spread "
                f"({spread:.1f} µs) is noise."
            )
    return "\n".join(lines)


def summary(run: Run) -> str:
    lines = ["| case | result |", "|---|---|"]
    for case in CASES:
        ok = case.key in run.samples and case.key not in run.errors
        verdict = "measured" if ok else f"FAIL: {run.errors.get(case.key, 'not measured')}"
        lines.append(f"| {case.label} | {verdict.splitlines()[0][:160]} |")
    return "\n".join(lines)


def results_section(run: Run) -> str:
    info = machine_info()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    quick = " (--quick)" if run.args.quick else ""
    parts = [
        f"Measured {when} by `bench/policies`{quick}: wrk -t2 -c64, {run.args.duration:g} s "
        "per run after a 1 s warm-up, all on 127.0.0.1.",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}, "
        f"Python {info['python']}. CPU pinning: {run.cpus[3]}. Load average at the start: "
        f"{' / '.join(f'{x:.2f}' for x in run.load)} (1 / 5 / 15 min). "
        f"edgegw at commit {info['commit']} (plus any uncommitted changes).",
        "One `edgegw run --workers 1`, one HTTPRoute per case (by Host header) under the "
        "Envoy Gateway policy a user would write; nginx upstream (1 worker) with a 100-byte "
        f"text body, an {HTML_SIZE:,}-byte HTML page and an Authelia-like forward-auth "
        "location (200 + `Remote-User` for the session cookie). Each case was checked to act "
        "before it was measured, and ran between two runs of its baseline (same body, no "
        "policy): Δ is its CPU µs per request minus the mean of those two. CPU is utime + "
        "stime of edgegw's process tree over the measured run; bytes/response is one curl "
        "request's `size_download` (compression: the ratio to the plain page).",
        table(run),
        noise_text(run),
    ]
    if run.errors:
        errors = "\n".join(
            f"- {key}: {msg.splitlines()[0][:200]}" for key, msg in run.errors.items()
        )
        parts.append("Errors in this run:\n\n" + errors)
    return "\n\n".join(p for p in parts if p)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/policies", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="3 s per wrk run")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (configs, process logs)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--no-results", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument(
        "--startup-timeout", type=float, default=30.0, help="seconds to wait for /readyz"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    if args.duration < 1 or not args.duration.is_integer():
        parser.error("--duration: whole seconds, at least 1 (wrk takes no fractions)")
    return args


def run_all(run: Run) -> None:
    print("== upstream and edgegw", flush=True)
    if not run.attempt("upstream", partial(start_upstream, run)):
        return
    if not run.attempt("edgegw", partial(start_edgegw, run)):
        return
    print("== checking that each policy acts", flush=True)
    problems = policy_accepted(run)
    verified = [c.key for c in CASES if run.attempt(c.key, partial(verify_case, run, c, problems))]
    for key in verified:
        print(f"  {BY_KEY[key].label:<44} ok", flush=True)
    print("== load: each case between two runs of its baseline", flush=True)
    for index, key in enumerate(order(verified)):
        run.attempt(key, partial(measure, run, key, index))


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[str]:
    """A temporary directory for configs, logs and pid files; kept with --keep."""
    if keep:
        yield tempfile.mkdtemp(prefix="edgegw-bench-policies-")
        return
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-policies-") as tmp:
        yield tmp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile_limit()
    with signals_raise(), workdir(args.keep) as tmp, Procs(Path(tmp)) as procs:
        run = Run(args, procs, cpu_plan(not args.no_pin))
        print(f"bench/policies: {args.duration:g} s per run; {run.cpus[3]}; temp dir {tmp}")
        run_all(run)
    print("\n== figures\n" + table(run))
    print(noise_text(run))
    print("\n== summary\n" + summary(run))
    if not args.no_results:
        update_results_section("Policies", results_section(run))
        print("\nupdated the Policies section of bench/RESULTS.md")
    ok = all(c.key in run.samples for c in CASES) and not run.errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
