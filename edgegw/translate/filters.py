"""HTTPRoute and GRPCRoute filters → IR filters.

A filter edgegw cannot apply is never skipped: the spec says the requests it
would have processed must get an error, so its rule becomes ``invalid`` (the
data plane answers 500) and the route's conditions say why. An ExtensionRef
names a resource nobody can resolve here (ResolvedRefs=False, InvalidKind);
ExternalAuth is a filter type edgegw does not implement (Accepted=False,
UnsupportedValue).
"""

from __future__ import annotations

from edgegw import ir
from edgegw.api import filters as api_filters
from edgegw.translate.backends import BackendContext, resolve
from edgegw.translate.routes import RouteProblems

AnyFilter = api_filters.HTTPRouteFilter | api_filters.GRPCRouteFilter


def header_modifier(config: api_filters.HTTPHeaderFilter) -> ir.HeaderModifier:
    return ir.HeaderModifier(
        set=tuple((h.name.lower(), h.value) for h in config.set),
        add=tuple((h.name.lower(), h.value) for h in config.add),
        remove=tuple(name.lower() for name in config.remove),
    )


def _path(config: api_filters.HTTPPathModifier | None) -> ir.PathModifier | None:
    if config is None:
        return None
    value = config.replace_full_path
    if config.type == "ReplacePrefixMatch":
        value = config.replace_prefix_match
    return ir.PathModifier(type=config.type, value=value or "")


def _mirror(
    ctx: BackendContext, config: api_filters.HTTPRequestMirrorFilter, problems: RouteProblems
) -> ir.RequestMirrorFilter:
    backend, problem = resolve(ctx, config.backend_ref)
    if problem is not None:
        problems.unresolved(problem.reason, f"RequestMirror: {problem.message}")
    fraction = 1.0
    if config.percent is not None:
        fraction = config.percent / 100
    elif config.fraction is not None:
        fraction = config.fraction.numerator / config.fraction.denominator
    return ir.RequestMirrorFilter(backend=backend, fraction=fraction)


def _cors(config: api_filters.HTTPCORSFilter) -> ir.CORSFilter:
    return ir.CORSFilter(
        allow_origins=config.allow_origins,
        allow_methods=tuple(config.allow_methods),
        allow_headers=config.allow_headers,
        expose_headers=config.expose_headers,
        allow_credentials=bool(config.allow_credentials),
        max_age=config.max_age,
    )


def convert(
    ctx: BackendContext, filters: tuple[AnyFilter, ...], problems: RouteProblems
) -> tuple[tuple[ir.HTTPFilter, ...], str | None]:
    """The IR filters, and why the rule cannot be served (None when it can)."""
    out: list[ir.HTTPFilter] = []
    invalid: str | None = None
    for f in filters:
        converted = _one(ctx, f, problems)
        if isinstance(converted, str):
            invalid = invalid or converted
        else:
            out.append(converted)
    return tuple(out), invalid


def _one(ctx: BackendContext, f: AnyFilter, problems: RouteProblems) -> ir.HTTPFilter | str:
    if f.request_header_modifier is not None:
        return ir.RequestHeaderModifierFilter(modifier=header_modifier(f.request_header_modifier))
    if f.response_header_modifier is not None:
        return ir.ResponseHeaderModifierFilter(modifier=header_modifier(f.response_header_modifier))
    if f.request_mirror is not None:
        return _mirror(ctx, f.request_mirror, problems)
    if isinstance(f, api_filters.HTTPRouteFilter):
        found = _http_only(f)
        if found is not None:
            return found
    if f.extension_ref is not None:
        ref = f.extension_ref
        message = f"ExtensionRef filter {ref.group}/{ref.kind} {ref.name} cannot be resolved"
        problems.unresolved("InvalidKind", message)
        return message
    message = f"filter type {f.type} is not supported"
    problems.reject("UnsupportedValue", message)
    return message


def _http_only(f: api_filters.HTTPRouteFilter) -> ir.HTTPFilter | None:
    if f.request_redirect is not None:
        r = f.request_redirect
        return ir.RequestRedirectFilter(
            scheme=r.scheme,
            hostname=r.hostname,
            path=_path(r.path),
            port=r.port,
            status_code=r.status_code,
        )
    if f.url_rewrite is not None:
        return ir.URLRewriteFilter(hostname=f.url_rewrite.hostname, path=_path(f.url_rewrite.path))
    if f.cors is not None:
        return _cors(f.cors)
    return None
