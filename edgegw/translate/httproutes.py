"""HTTPRoute and GRPCRoute rules → ``ir.HTTPRouteRule``.

A GRPCRoute is served as HTTP/2 requests to ``/service/method``, so its rules
become HTTP rules with ``grpc=True`` and its method matches become path
matches: service and method give an exact path, service alone a path prefix,
method alone (or a RegularExpression match) a path regex.
"""

from __future__ import annotations

import re

from edgegw import ir
from edgegw.api import routes as api_routes
from edgegw.translate.backends import BackendContext, resolve
from edgegw.translate.filters import convert
from edgegw.translate.routes import RouteProblems


def _backends(
    ctx: BackendContext,
    refs: tuple[api_routes.HTTPBackendRef, ...] | tuple[api_routes.GRPCBackendRef, ...],
    problems: RouteProblems,
) -> tuple[tuple[ir.Backend, ...], str | None]:
    out = []
    invalid: str | None = None
    for ref in refs:
        backend, problem = resolve(ctx, ref, ref.weight)
        if problem is not None:
            problems.unresolved(problem.reason, problem.message)
        filters, bad = convert(ctx, ref.filters, problems)
        invalid = invalid or bad
        if filters:
            backend = ir.Backend(
                name=backend.name,
                weight=backend.weight,
                endpoints=backend.endpoints,
                app_protocol=backend.app_protocol,
                tls=backend.tls,
                filters=filters,
                invalid=backend.invalid or bad,
            )
        out.append(backend)
    return tuple(out), invalid


def _seconds(value: float | None) -> float | None:
    return float(value) if value else None  # 0s disables a timeout


def _session(
    config: api_routes.SessionPersistence | None, fallback: str
) -> ir.SessionPersistence | None:
    if config is None:
        return None
    name = None
    if config.cookie is not None:
        name = config.cookie.name
    if config.header is not None:
        name = config.header.name
    permanent = config.cookie is not None and config.cookie.lifetime_type == "Permanent"
    return ir.SessionPersistence(
        name=name or fallback,
        type=config.type,
        absolute_timeout=_seconds(config.absolute_timeout),
        permanent_cookie=permanent,
    )


def http_rules(
    ctx: BackendContext, route: api_routes.HTTPRoute, problems: RouteProblems
) -> tuple[ir.HTTPRouteRule, ...]:
    return tuple(
        _http_rule(ctx, route, i, rule, problems) for i, rule in enumerate(route.spec.rules)
    )


def _http_rule(
    ctx: BackendContext,
    route: api_routes.HTTPRoute,
    index: int,
    rule: api_routes.HTTPRouteRule,
    problems: RouteProblems,
) -> ir.HTTPRouteRule:
    filters, bad_filter = convert(ctx, rule.filters, problems)
    backends, bad_backend = _backends(ctx, rule.backend_refs, problems)
    timeouts = rule.timeouts
    retry = None
    if rule.retry is not None:
        retry = ir.Retry(
            codes=rule.retry.codes,
            attempts=rule.retry.attempts or 1,
            backoff=_seconds(rule.retry.backoff),
        )
    return ir.HTTPRouteRule(
        index=index,
        name=rule.name,
        matches=tuple(_http_match(m) for m in rule.matches) or (ir.HTTPMatch(),),
        filters=filters,
        backends=backends,
        request_timeout=_seconds(timeouts.request) if timeouts else None,
        backend_request_timeout=_seconds(timeouts.backend_request) if timeouts else None,
        retry=retry,
        session_persistence=_session(rule.session_persistence, _cookie_name(route, index)),
        invalid=bad_filter or bad_backend,
    )


def _cookie_name(route: api_routes.HTTPRoute | api_routes.GRPCRoute, index: int) -> str:
    return f"edgegw-{route.metadata.namespace}-{route.metadata.name}-{index}"


def _http_match(match: api_routes.HTTPRouteMatch) -> ir.HTTPMatch:
    return ir.HTTPMatch(
        path_type=match.path.type,
        path=match.path.value,
        headers=tuple(
            ir.ValueMatch(type=h.type, name=h.name.lower(), value=h.value) for h in match.headers
        ),
        query=tuple(
            ir.ValueMatch(type=q.type, name=q.name, value=q.value) for q in match.query_params
        ),
        method=match.method,
    )


def grpc_rules(
    ctx: BackendContext, route: api_routes.GRPCRoute, problems: RouteProblems
) -> tuple[ir.HTTPRouteRule, ...]:
    rules = route.spec.rules or (api_routes.GRPCRouteRule(),)
    return tuple(_grpc_rule(ctx, route, i, rule, problems) for i, rule in enumerate(rules))


def _grpc_rule(
    ctx: BackendContext,
    route: api_routes.GRPCRoute,
    index: int,
    rule: api_routes.GRPCRouteRule,
    problems: RouteProblems,
) -> ir.HTTPRouteRule:
    filters, bad_filter = convert(ctx, rule.filters, problems)
    backends, bad_backend = _backends(ctx, rule.backend_refs, problems)
    return ir.HTTPRouteRule(
        index=index,
        name=rule.name,
        matches=tuple(_grpc_match(m) for m in rule.matches) or (ir.HTTPMatch(),),
        filters=filters,
        backends=backends,
        session_persistence=_session(rule.session_persistence, _cookie_name(route, index)),
        invalid=bad_filter or bad_backend,
        grpc=True,
    )


def _grpc_match(match: api_routes.GRPCRouteMatch) -> ir.HTTPMatch:
    headers = tuple(
        ir.ValueMatch(type=h.type, name=h.name.lower(), value=h.value) for h in match.headers
    )
    path_type, path = grpc_path(match.method)
    return ir.HTTPMatch(path_type=path_type, path=path, headers=headers)


def grpc_path(method: api_routes.GRPCMethodMatch | None) -> tuple[ir.PathType, str]:
    """The path match a gRPC method match stands for."""
    if method is None:
        return ("PathPrefix", "/")
    service, name = method.service, method.method
    if method.type == "Exact":
        if service and name:
            return ("Exact", f"/{service}/{name}")
        if service:
            return ("PathPrefix", f"/{service}")
        return ("RegularExpression", f"/[^/]+/{re.escape(name or '')}")
    return ("RegularExpression", f"/{service or '[^/]+'}/{name or '[^/]+'}")
