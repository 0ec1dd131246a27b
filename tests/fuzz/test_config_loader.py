"""Fuzzing the config loader: parse, decode and translate never fail but with ConfigError.

Two kinds of input: the repository's own config files (``config/`` and the
golden inputs) mutated at the text level (bytes replaced, lines dropped or
repeated, YAML punctuation, anchors and aliases inserted), and documents
generated from the Gateway API's field names with values of every shape.
Each goes through what a reload does to one file: ``parse`` (with its
bounds), ``decode`` of every document, then ``translate`` of what decoded.
The first two may only raise ``ConfigError`` (a warning for an unknown kind
included); ``translate`` may not raise at all. Each input must also finish
within a few seconds: the bounds are what keeps a file from costing more.

A short run is part of the suite; ``make fuzz`` runs it at length
(``HYPOTHESIS_PROFILE=fuzz``, profiles in ``tests/conftest.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgegw import addresses
from edgegw.api import Object, build_resources
from edgegw.config import decode, parse
from edgegw.errors import ConfigError
from edgegw.translate import TranslateOptions, translate

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted(
    p.read_text() for p in [*ROOT.glob("config/**/*.yaml"), *ROOT.glob("tests/golden/*.in.yaml")]
)
CONTROLLER = "edgegw.io/gateway-controller"
PER_INPUT_SECONDS = 10.0  # generous for a machine under load; a bomb takes minutes

KINDS = [
    ("gateway.networking.k8s.io/v1", "GatewayClass"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"),
    ("gateway.networking.k8s.io/v1alpha2", "TLSRoute"),
    ("gateway.networking.k8s.io/v1alpha2", "TCPRoute"),
    ("gateway.networking.k8s.io/v1alpha2", "UDPRoute"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
    ("gateway.networking.k8s.io/v1alpha3", "BackendTLSPolicy"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Namespace"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("gateway.envoyproxy.io/v1alpha1", "Backend"),
    ("metallb.io/v1beta1", "IPAddressPool"),
    ("v1", "List"),
    ("example.com/v1", "Unknown"),
]
FIELDS = """
name namespace labels annotations spec gatewayClassName controllerName listeners
protocol port hostname hostnames tls mode certificateRefs allowedRoutes namespaces from
kinds parentRefs sectionName rules matches path type value headers queryParams method
filters backendRefs weight group kind addresses items data stringData ports targetPort
appProtocol endpoints conditions ready addressType externalName requestHeaderModifier
set add remove requestRedirect urlRewrite scheme statusCode timeouts request
sessionPersistence validation caCertificateRefs targetRefs selector matchLabels
""".split()  # noqa: SIM905 (a word list reads better)

PUNCTUATION = ["&a ", "*a", "<<: *a\n", "- ", ": ", "{", "[", "'", "\t", "---\n", "!!binary "]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(["", "/", "*", "*.example.com", "HTTP", "HTTPS", "TLS", "TCP", "UDP", "::1"]),
    st.sampled_from(["PathPrefix", "Exact", "RegularExpression", "Terminate", "Passthrough"]),
    st.sampled_from(["127.0.0.1", "10.0.0.0/8", "example.com", "edgegw", "gw", "default"]),
    st.text(max_size=20),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    ),
    max_leaves=40,
)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    api_version, kind = draw(st.sampled_from(KINDS))
    doc: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    doc["metadata"] = draw(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["gw", "edgegw", "r", "svc", "a" * 300])},
            optional={"namespace": st.sampled_from(["default", "other", ""]), "labels": values},
        )
    )
    doc.update(draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)))
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        lines = text.split("\n")
        line = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        choice = draw(st.integers(min_value=0, max_value=4))
        if choice == 0:
            text = text[:at] + draw(st.sampled_from(PUNCTUATION)) + text[at:]
        elif choice == 1:
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=40)) :]
        elif choice == 2:
            text = "\n".join(lines[:line] + lines[line + 1 :])
        elif choice == 3:
            text = "\n".join(lines[: line + 1] + lines[line:])
        else:
            text = text[:at] + draw(st.text(max_size=8)) + text[at:]
    return text


def load(text: str) -> None:
    """One file through the loader and the translator, as a reload takes it."""
    started = time.monotonic()
    try:
        documents = parse("fuzz.yaml", text)
    except ConfigError:
        return
    objects: list[Object] = []
    for doc in documents:
        try:
            objects.append(decode(doc))
        except ConfigError:
            continue
    resources = build_resources(objects)
    assignments = addresses.assign(resources, {}, CONTROLLER)
    translate(
        resources,
        TranslateOptions(
            controller_name=CONTROLLER, pool_assignments=assignments, generation=1, now=0.0
        ),
    )
    assert time.monotonic() - started < PER_INPUT_SECONDS


FUZZ_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ_SETTINGS
@given(mutated())
def test_mutated_config_files(text: str) -> None:
    load(text)


@FUZZ_SETTINGS
@given(st.lists(resources(), min_size=1, max_size=6), st.booleans())
def test_generated_resources(docs: list[dict[str, Any]], as_list: bool) -> None:
    if as_list:  # the output of kubectl get -o yaml
        load(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs}))
    else:
        load(yaml.safe_dump_all(docs))
