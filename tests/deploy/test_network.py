"""deploy/kubernetes/networkpolicy.yaml, evaluated as Kubernetes would: deny by default,
intake only from the upstream namespace, metrics only from monitoring, egress only to DNS,
Postgres, Redis and (workers) HTTPS on the internet and to webhook receivers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from tests.deploy.test_manifests import INTAKE, INTAKE_PORT, WORKER, named_port, only_container
from tests.deploy.test_manifests import resources as kube_resources

APP = {"app.kubernetes.io/name": "bluebutton-ingest"}
POD_LABELS = {
    component: {**APP, "app.kubernetes.io/component": component}
    for component in ("worker", "intake", "migrate")
}
POSTGRES_IP, REDIS_IP, RECEIVER_IP = "10.0.16.5", "10.0.17.5", "10.0.18.5"
PUBLIC_IP, PRIVATE_IP = "52.1.2.3", "10.9.9.9"


@dataclass(frozen=True)
class Peer:
    """The other end: a pod (namespace labels and pod labels) or an address."""

    namespace: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


def policies() -> list[dict[str, Any]]:
    return [doc for doc in kube_resources() if doc["kind"] == "NetworkPolicy"]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(c) for c in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if peer.ip is not None:
        return False
    same_namespace = peer.namespace.get("kubernetes.io/metadata.name") == "bluebutton-ingest"
    if "namespaceSelector" in rule_peer:
        if not _matches(rule_peer["namespaceSelector"], peer.namespace):
            return False
    elif not same_namespace:
        return False
    return _matches(rule_peer.get("podSelector", {}), peer.labels)


def allowed(
    component: str,
    direction: Literal["Ingress", "Egress"],
    peer: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether the policies let this traffic through (isolated pods: only what a rule allows)."""
    pod = POD_LABELS[component]
    selecting = [
        p["spec"]
        for p in policies()
        if direction in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], pod)
    ]
    assert selecting, f"{component} is not isolated for {direction}"
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for spec in selecting:
        for rule in spec.get(key, []):
            ports = [(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])]
            if ports and (protocol, port) not in ports:
                continue
            if any(_peer_matches(rp, peer) for rp in rule.get(peers_key, [])):
                return True
    return False


def namespace(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}


UPSTREAM = Peer(namespace=namespace("upstream"), labels={"app": "backend"})
MONITORING = Peer(namespace=namespace("monitoring"), labels={"app": "prometheus"})
ELSEWHERE = Peer(namespace=namespace("default"), labels={"app": "anything"})
NEIGHBOUR = Peer(namespace=namespace("bluebutton-ingest"), labels=POD_LABELS["worker"])
DNS = Peer(namespace=namespace("kube-system"), labels={"k8s-app": "kube-dns"})
METRICS_PORT = 9108


def test_a_default_deny_isolates_every_pod_both_ways() -> None:
    deny = [p for p in policies() if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1
    spec = deny[0]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert not spec.get("ingress")
    assert not spec.get("egress")


def test_the_ports_are_those_the_containers_serve() -> None:
    assert named_port(only_container(INTAKE), "http") == INTAKE_PORT
    assert named_port(only_container(WORKER), "metrics") == METRICS_PORT


@pytest.mark.parametrize(
    ("component", "peer", "port", "expected"),
    [
        ("intake", UPSTREAM, INTAKE_PORT, True),
        ("intake", ELSEWHERE, INTAKE_PORT, False),
        ("intake", MONITORING, INTAKE_PORT, False),
        ("intake", NEIGHBOUR, INTAKE_PORT, False),
        ("worker", MONITORING, METRICS_PORT, True),
        ("worker", UPSTREAM, METRICS_PORT, False),
        ("worker", ELSEWHERE, METRICS_PORT, False),
        ("intake", MONITORING, METRICS_PORT, False),
        ("migrate", UPSTREAM, INTAKE_PORT, False),
    ],
)
def test_ingress(component: str, peer: Peer, port: int, expected: bool) -> None:
    assert allowed(component, "Ingress", peer, port) is expected


@pytest.mark.parametrize(
    ("component", "peer", "port", "expected"),
    [
        *((c, DNS, 53, True) for c in ("worker", "intake", "migrate")),
        *((c, Peer(ip=POSTGRES_IP), 5432, True) for c in ("worker", "intake", "migrate")),
        ("worker", Peer(ip=REDIS_IP), 6379, True),
        ("intake", Peer(ip=REDIS_IP), 6379, True),
        ("migrate", Peer(ip=REDIS_IP), 6379, False),
        ("worker", Peer(ip=PUBLIC_IP), 443, True),
        ("worker", Peer(ip=PRIVATE_IP), 443, False),
        ("worker", Peer(ip="169.254.169.254"), 443, False),  # cloud metadata
        ("intake", Peer(ip=PUBLIC_IP), 443, False),
        ("migrate", Peer(ip=PUBLIC_IP), 443, False),
        ("worker", Peer(ip=PUBLIC_IP), 80, False),
        ("worker", Peer(ip=PUBLIC_IP), 5432, False),
        ("worker", ELSEWHERE, 53, False),
        # Webhook receivers inside the network: the upstream namespace, WEBHOOK_RECEIVERS_CIDR.
        ("worker", UPSTREAM, 443, True),
        ("worker", Peer(ip=RECEIVER_IP), 443, True),
        ("worker", Peer(ip=RECEIVER_IP), 80, False),
        ("worker", UPSTREAM, 80, False),
        ("worker", ELSEWHERE, 443, False),
        ("intake", UPSTREAM, 443, False),
        ("intake", Peer(ip=RECEIVER_IP), 443, False),
        ("migrate", Peer(ip=RECEIVER_IP), 443, False),
    ],
)
def test_egress(component: str, peer: Peer, port: int, expected: bool) -> None:
    protocol = "UDP" if port == 53 else "TCP"
    assert allowed(component, "Egress", peer, port, protocol) is expected
