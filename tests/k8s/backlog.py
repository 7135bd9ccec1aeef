"""The autoscalers' signal as the manifests define it: KEDA's PromQL query, and the
prometheus-adapter rule behind the HPA's External metric. Shared by the static tests and
the live ones (test_backlog_live.py), so both check the text that ships.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from tests.k8s.manifests import K8S, Obj, load_yaml_stream, of_kind

ADAPTER_VALUES = K8S / "components" / "hpa" / "prometheus-adapter-values.yaml"
EXAMPLE_ENV = K8S / "base" / "credentials.env.example"
READY = "rabbitmq_detailed_queue_messages_ready"
UNACKED = "rabbitmq_detailed_queue_messages_unacked"
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"\s*')


def keda_trigger(objects: list[Obj]) -> Obj:
    (scaled,) = of_kind(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    return trigger


def selectors(query: str) -> dict[str, dict[str, str]]:
    """{metric: {label: value}} for every `metric{label="value",...}` in a query (exact
    matchers only; a metric selected twice with different labels is an error)."""
    found: dict[str, dict[str, str]] = {}
    for name, body in _SELECTOR.findall(query):
        labels = {}
        for part in filter(str.strip, body.split(",")):
            match = _MATCHER.fullmatch(part)
            assert match, f"cannot read matcher {part!r} in {query}"
            key, op, value = match.groups()
            assert op == "=", f"{name}: only exact matchers select one queue ({part})"
            labels[key] = value
        assert found.setdefault(name, labels) == labels, f"{name} selected two ways"
    return found


def adapter_rule(metric_name: str) -> Obj:
    """The prometheus-adapter external rule that names `metric_name`."""
    (values,) = load_yaml_stream(ADAPTER_VALUES.read_text())
    rules = [r for r in values["rules"]["external"] if r["name"]["as"] == metric_name]
    assert len(rules) == 1, f"{ADAPTER_VALUES.name}: {len(rules)} rules serve {metric_name}"
    return rules[0]


def adapter_query(rule: Obj, namespace: str, match_labels: dict[str, str]) -> str:
    """metricsQuery as prometheus-adapter runs it for an HPA in `namespace`: the rule's
    namespace override plus the HPA's selector become <<.LabelMatchers>>."""
    overrides = rule.get("resources", {}).get("overrides", {})
    labels = {label: namespace for label, target in overrides.items()
              if target.get("resource") == "namespace"}
    labels |= match_labels
    matchers = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return str(rule["metricsQuery"]).replace("<<.LabelMatchers>>", matchers)


def expected_vhost() -> str:
    """The vhost in AMQP_URL: the example Secret's (production documents the same URL)."""
    for line in EXAMPLE_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "AMQP_URL":
            return unquote(urlsplit(value).path[1:]) or "/"
    raise AssertionError(f"{EXAMPLE_ENV.name} has no AMQP_URL")
