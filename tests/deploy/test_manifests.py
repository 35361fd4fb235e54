"""The deployment files (deploy/): pure file checks, no cluster, no Docker daemon.

Each test reads the files as a cluster or Compose would and checks one thing that breaks a
deployment, leaks a secret or defeats the design (probes, grace, shared budget) when wrong.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli import build_parser
from worker.settings import SECRET_SETTINGS as SETTINGS_SECRETS
from worker.settings import Settings, is_loopback_host, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"

IMAGE = "ghcr.io/example/bluebutton-ingest:0.1.0"
WORKER = "bluebutton-ingest-worker"
INTAKE = "bluebutton-ingest-intake"
MIGRATE = "bluebutton-ingest-migrate"
INTAKE_PORT = 8080
# Values that must never be written into a manifest: every secret setting. Compose's local
# Redis has no password, so its plain REDIS_URL may stand there; in Kubernetes it is secret.
KUBE_SECRET_SETTINGS = SETTINGS_SECRETS
SECRET_SETTINGS = tuple(name for name in SETTINGS_SECRETS if name != "REDIS_URL")
# Replicas share one BB2 budget (BB_RATE_LIMIT for all together): two saturate it; more only
# wait for slots while holding Postgres connections (see worker-scaledobject.yaml).
MAX_WORKER_REPLICAS = 4
# Time a stopping worker needs beyond WORKER_SHUTDOWN_GRACE to cancel jobs and close its pools.
SHUTDOWN_MARGIN_SECONDS = 10
EXPECTED_COMMANDS = {"migrate", "worker", "serve", "emulator"}
DSN_PASSWORD = re.compile(r"postgres(?:ql)?://[^/@\s:]*:(?P<password>[^@\s]*)@")
REQUIRED_INTERPOLATION = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?[^}]*\}$")
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


# ---------------------------------------------------------------- reading the files


@functools.cache
def kube_files() -> tuple[Path, ...]:
    return tuple(sorted(KUBE.glob("*.y*ml")))


@functools.cache
def documents(path: Path) -> tuple[dict[str, Any], ...]:
    """Every YAML document of a file (a file may hold several), empty ones dropped."""
    with path.open(encoding="utf-8") as stream:
        docs = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), f"{path.name}: a document is not a mapping"
    return tuple(docs)


def resources() -> list[dict[str, Any]]:
    """Every Kubernetes object of deploy/kubernetes (the kustomization excluded)."""
    return [
        doc
        for path in kube_files()
        for doc in documents(path)
        if doc.get("kind") != "Kustomization"
    ]


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = workload["spec"]["template"]
    return template


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(workload)["spec"]
    return spec


def workloads() -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] in POD_KINDS]


def containers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for workload in workloads():
        for container in containers_of(pod_spec(workload)):
            yield f"{workload['metadata']['name']}/{container['name']}", container


def only_container(name: str, kind: str = "Deployment") -> dict[str, Any]:
    containers = pod_spec(resource(kind, name))["containers"]
    assert len(containers) == 1, f"{name}: expected one container"
    container: dict[str, Any] = containers[0]
    return container


@functools.cache
def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE)
    return doc


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def app_services() -> dict[str, dict[str, Any]]:
    """The Compose services that run this project's image."""
    return {name: s for name, s in compose_services().items() if s.get("image") == IMAGE}


def setting_default(name: str) -> Any:
    fields = [f for f in Settings.model_fields.values() if f.alias == name]
    assert fields, f"{name} is not a setting of worker/settings.py"
    return fields[0].default


def config_maps() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in resources()
        if doc["kind"] == "ConfigMap"
    }


def env_source(container: dict[str, Any], name: str) -> dict[str, Any] | None:
    """How a container gets ``name``: its env entry, or the ConfigMap entry envFrom brings."""
    for item in container.get("env", []):
        if item["name"] == name:
            return dict(item)
    for source in reversed(container.get("envFrom", [])):
        ref = source.get("configMapRef")
        data = config_maps().get(ref["name"], {}) if ref else {}
        if name in data:
            return {"name": name, "value": data[name]}
    return None


def setting(container: dict[str, Any], name: str) -> str:
    """The value a container sees for a plain (non-secret) setting, defaults included."""
    source = env_source(container, name)
    if source is None:
        return str(setting_default(name))
    assert "value" in source, f"{name} is expected as a plain value"
    return str(source["value"])


def named_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's port, named or numbered, as the container port number."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"{container['name']}: no container port named {port!r}"
    return int(numbers[0])


def parses(argv: list[str]) -> argparse.Namespace:
    """bbingest's own parser accepts this command line (options included)."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"bbingest rejects {' '.join(argv)!r}")


def subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def duration_seconds(text: str | int | float) -> float:
    """A Compose duration (``40s``, ``1m30s``) in seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def compose_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def scalars(node: Any) -> Iterator[str]:
    """Every string anywhere in a parsed document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from scalars(key)
            yield from scalars(value)
    elif isinstance(node, list):
        for item in node:
            yield from scalars(item)
    elif isinstance(node, str):
        yield node


# ---------------------------------------------------------------- the Dockerfile


@functools.cache
def dockerfile() -> tuple[tuple[str, str], ...]:
    """(instruction, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return tuple(instructions)


def final_stage() -> list[tuple[str, str]]:
    instructions = list(dockerfile())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            excluded = not negated
    return excluded


def test_dockerfile_copy_sources_exist_and_reach_the_build() -> None:
    copies = [args.split() for keyword, args in dockerfile() if keyword in {"COPY", "ADD"}]
    local = [words for words in copies if not any(w.startswith("--from") for w in words)]
    sources = [w for words in local for w in [x for x in words if not x.startswith("--")][:-1]]
    assert sources, "no COPY from the build context found"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    # What the runtime needs is in the image: the package, the migrations, the pins.
    assert {"worker", "schemas", "constraints.txt", "pyproject.toml"} <= set(sources)


def test_dockerfile_keeps_secrets_and_clutter_out_of_the_context() -> None:
    for path in (".demo/token.key", ".venv/bin/python", ".git/config", "worker/__pycache__/x.pyc"):
        assert dockerignored(path), f"{path} would be sent to the Docker build"


def test_dockerfile_runtime_is_slim_non_root_and_exposes_both_ports() -> None:
    instructions = dockerfile()
    defaults = dict(
        arg.split("=", 1) for keyword, arg in instructions if keyword == "ARG" and "=" in arg
    )
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], args.split()[0])
        for keyword, args in instructions
        if keyword == "FROM"
    ]
    assert len(bases) >= 2, "expected a multi-stage build"
    for base in bases:
        name, _, tag = base.partition("@")[0].rpartition(":")
        assert name, f"FROM {base}: no image name"
        assert tag not in {"", "latest"}, f"FROM {base}: pin a tag"
        assert "slim" in tag, f"FROM {base}: use a slim base"
    stage = final_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the runtime stage runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric, or runAsNonRoot cannot verify it"
    assert int(uid) != 0
    for workload in workloads():
        assert pod_spec(workload)["securityContext"]["runAsUser"] == int(uid), (
            f"{workload['metadata']['name']}: runAsUser differs from the image's USER"
        )
    exposed = {port for keyword, args in stage if keyword == "EXPOSE" for port in args.split()}
    assert {"9108", "8080"} <= exposed
    assert str(setting_default("METRICS_PORT")) in exposed
    assert "HEALTHCHECK" not in {keyword for keyword, _ in instructions}


def test_dockerfile_entrypoint_is_bbingest_in_exec_form() -> None:
    stage = dict(final_stage())
    assert stage["ENTRYPOINT"].startswith("["), "shell form would hide SIGTERM from Python"
    assert yaml.safe_load(stage["ENTRYPOINT"]) == ["bbingest"]
    command = yaml.safe_load(stage["CMD"])
    assert command[0] in subcommands()


# ---------------------------------------------------------------- Kubernetes


def test_every_manifest_parses_as_kubernetes_objects() -> None:
    assert kube_files(), "no manifests in deploy/kubernetes"
    for path in kube_files():
        docs = documents(path)
        assert docs, f"{path.name} is empty"
        for doc in docs:
            assert doc.get("apiVersion"), f"{path.name}: an object has no apiVersion"
            assert doc.get("kind"), f"{path.name}: an object has no kind"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], f"{path.name}: an object has no name"


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = documents(KUBE / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    on_disk = {path.name for path in kube_files()} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_every_container_runs_the_pinned_image() -> None:
    name, _, tag = IMAGE.rpartition(":")
    assert name
    assert tag not in {"", "latest"}
    containers = dict(all_containers())
    assert containers, "no containers found"
    for where, container in containers.items():
        assert container["image"] == IMAGE, f"{where}: {container['image']}"
        assert container.get("imagePullPolicy", "IfNotPresent") != "Always", where


def test_every_container_runs_a_real_bbingest_command() -> None:
    known = subcommands()
    seen = set()
    for where, container in all_containers():
        assert container.get("command", ["bbingest"]) == ["bbingest"], where
        argv = [str(arg) for arg in container["args"]]
        seen.add(argv[0])
        assert argv[0] in known, f"{where}: bbingest has no command {argv[0]!r}"
        parses(argv)
    assert seen == {"migrate", "worker", "serve"}


def test_worker_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    container = only_container(WORKER)
    metrics_port = int(setting(container, "METRICS_PORT"))
    assert metrics_port != 0, "METRICS_PORT=0 turns the probe endpoint off"
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert named_port(container, check["port"]) == metrics_port, probe
    annotations = pod_template(resource("Deployment", WORKER))["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_intake_probes_hit_healthz_on_the_port_it_serves() -> None:
    container = only_container(INTAKE)
    args = parses([str(a) for a in container["args"]])
    assert args.port == INTAKE_PORT
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/healthz"
    assert named_port(container, ready["port"]) == INTAKE_PORT
    # Liveness: /healthz too, or a plain TCP check (the intake's /healthz includes Postgres).
    handlers = {"httpGet", "tcpSocket", "exec", "grpc"} & set(container["livenessProbe"])
    assert handlers in ({"httpGet"}, {"tcpSocket"})
    alive = container["livenessProbe"][handlers.pop()]
    assert alive.get("path", "/healthz") == "/healthz"
    assert named_port(container, alive["port"]) == INTAKE_PORT
    service = resource("Service", INTAKE)
    (port,) = service["spec"]["ports"]
    assert named_port(container, port["targetPort"]) == INTAKE_PORT
    labels = pod_template(resource("Deployment", INTAKE))["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_secret_settings_come_from_secret_references() -> None:
    assert not [d for d in resources() if d["kind"] == "Secret"], "a Secret is committed"
    for name, data in config_maps().items():
        leaked = set(data) & {*KUBE_SECRET_SETTINGS, "BB_CLIENT_SECRET_FILE"}
        assert not leaked, f"ConfigMap {name} holds {leaked}"
    for where, container in all_containers():
        for item in container.get("env", []):
            if item["name"] in KUBE_SECRET_SETTINGS:
                assert "value" not in item, f"{where}: literal {item['name']}"
                assert item["valueFrom"]["secretKeyRef"]["name"], where
        for source in container.get("envFrom", []):
            assert set(source) <= {"configMapRef", "secretRef", "prefix"}, where


def test_no_manifest_holds_a_secret_value() -> None:
    for path in kube_files():
        for doc in documents(path):
            for text in scalars(doc):
                assert not DSN_PASSWORD.search(text), f"{path.name}: a DSN with a password"
            for node in _mappings(doc):
                for key in KUBE_SECRET_SETTINGS:
                    assert not isinstance(node.get(key), str | int), f"{path.name}: {key}"
                if node.get("name") in KUBE_SECRET_SETTINGS:
                    assert "value" not in node, f"{path.name}: {node['name']}"


def _mappings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _mappings(item)


def assert_read_from_mounted_file(
    spec: dict[str, Any], container: dict[str, Any], name: str
) -> None:
    """``name`` is set only as ``<name>_FILE``, a file of a read-only mounted Secret volume."""
    assert env_source(container, name) is None, f"{name} is set as a value, not a file"
    path = Path(setting(container, f"{name}_FILE"))
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    assert len(mounts) == 1, f"nothing is mounted at {path.parent}"
    assert mounts[0]["readOnly"] is True
    secret = volumes[mounts[0]["name"]]["secret"]
    items = {item["path"]: item["key"] for item in secret.get("items", [])}
    assert not items or path.name in items, f"the Secret volume has no file {path.name}"


@pytest.mark.parametrize(
    ("workload", "kind", "needed"),
    [
        (
            WORKER,
            "Deployment",
            {"DATABASE_URL", "REDIS_URL", "TOKEN_ENCRYPTION_KEY", "BB_CLIENT_SECRET"},
        ),
        (INTAKE, "Deployment", {"INTAKE_KEYS", "REDIS_URL", "DATABASE_URL"}),
        (MIGRATE, "Job", {"DATABASE_URL"}),
    ],
)
def test_each_workload_reads_its_secrets_from_mounted_files(
    workload: str, kind: str, needed: set[str]
) -> None:
    spec = pod_spec(resource(kind, workload))
    container = only_container(workload, kind)
    for name in needed:
        assert_read_from_mounted_file(spec, container, name)


def test_each_workload_gets_its_own_database_role() -> None:
    """Migrations run as the schema owner, workers and the intake as their own roles."""
    files = {
        name: Path(setting(only_container(name, kind), "DATABASE_URL_FILE")).name
        for name, kind in ((WORKER, "Deployment"), (INTAKE, "Deployment"), (MIGRATE, "Job"))
    }
    assert files == {
        WORKER: "worker-database-url",
        INTAKE: "intake-database-url",
        MIGRATE: "owner-database-url",
    }


def test_referenced_secrets_are_the_documented_ones() -> None:
    """Every Secret key a pod needs is created by a `kubectl create secret` in the comments."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in kube_files())
    documented: set[tuple[str, str]] = set()
    for command in re.findall(r"create secret generic (.+?)(?:\n(?!#\s+--)|$)", text, re.S):
        name = command.split()[0]
        for key in re.findall(r"--from-(?:literal|file)=([A-Za-z0-9_.-]+)", command):
            documented.add((name, key))
    assert documented, "no `kubectl create secret` command is documented"
    needed: set[tuple[str, str]] = set()
    for workload in workloads():
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    needed.add((volume["secret"]["secretName"], item["key"]))
        for container in containers_of(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.add((ref["name"], ref["key"]))
    assert needed
    assert needed <= documented, f"undocumented: {needed - documented}"


def test_configmap_holds_valid_settings_only() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    placeholders = {
        "DATABASE_URL": "postgresql://bbingest@db:5432/bbingest?sslmode=verify-full",
        "REDIS_URL": "rediss://redis:6379/0",
    }
    for name, data in config_maps().items():
        unknown = set(data) - aliases
        assert not unknown, f"ConfigMap {name}: {unknown} are not settings (typo?)"
        load_settings({**{k: str(v) for k, v in data.items()}, **placeholders})


def test_containers_run_as_non_root_without_privilege_escalation() -> None:
    assert workloads()
    for workload in workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod.get("runAsUser", 1) != 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers_of(spec):
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context.get("privileged", False) is False, where
            assert context.get("runAsUser", 1) != 0, where
            assert context.get("runAsNonRoot", True) is True, where
            assert "ALL" in context["capabilities"]["drop"], where


def test_containers_have_requests_and_limits() -> None:
    for where, container in all_containers():
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where} {bound}"


def test_worker_grace_period_exceeds_the_shutdown_grace() -> None:
    deployment = resource("Deployment", WORKER)
    grace = float(setting(only_container(WORKER), "WORKER_SHUTDOWN_GRACE"))
    period = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert period >= grace + SHUTDOWN_MARGIN_SECONDS, f"{period} s vs WORKER_SHUTDOWN_GRACE {grace}"


def test_pdb_selects_the_worker_pods_only() -> None:
    (pdb,) = [d for d in resources() if d["kind"] == "PodDisruptionBudget"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector
    for workload in workloads():
        labels = pod_template(workload)["metadata"]["labels"]
        selected = selector.items() <= labels.items()
        assert selected == (workload["metadata"]["name"] == WORKER), workload["metadata"]["name"]
    assert ("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"])


def test_deployments_select_their_own_pods() -> None:
    for workload in workloads():
        if workload["kind"] == "Job":
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_template(workload)["metadata"]["labels"].items()


def test_scaledobject_scales_the_workers_on_queue_depth_within_the_budget() -> None:
    (scaled,) = [d for d in resources() if d["kind"] == "ScaledObject"]
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] == WORKER
    resource("Deployment", target["name"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = " ".join(trigger["metadata"]["query"].split())
    assert "bbingest_queue_depth" in query
    # Every replica exports the same global depth: take it once per queue, then add the lanes.
    assert re.fullmatch(r"sum\s*\(\s*max by \(queue\) \(bbingest_queue_depth[^)]*\)\s*\)", query)
    assert float(trigger["metadata"]["threshold"]) > 0
    # KEDA's CRD types trigger metadata as a map of strings: a bare number is rejected.
    assert all(isinstance(value, str) for value in trigger["metadata"].values())
    low, high = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert low >= 1, "the nightly cron and the interactive lane need a running worker"
    assert low <= high <= MAX_WORKER_REPLICAS
    assert low <= resource("Deployment", WORKER)["spec"]["replicas"] <= high


# ---------------------------------------------------------------- docker-compose


def test_compose_runs_the_whole_stack() -> None:
    services = compose_services()
    assert {"postgres", "redis", "emulator", "migrate", "intake"} <= set(services)
    workers = [s for s in services.values() if compose_command(s)[:1] == ["worker"]]
    assert len(workers) == 2
    commands = {compose_command(s)[0] for s in app_services().values()}
    assert commands == EXPECTED_COMMANDS
    assert compose_command(services["intake"]) == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert services["migrate"].get("restart") == "no"
    assert services["postgres"]["image"].split(":")[1].startswith("16")


def test_compose_images_are_pinned_and_built_from_the_repo() -> None:
    assert set(app_services()) >= {"emulator", "migrate", "intake"}
    for name, service in compose_services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image}"
        assert tag not in {"", "latest"}, f"{name}: pin a tag, not {image}"
        assert "/" not in tag, f"{name}: pin a tag, not {image}"
        if "build" in service:
            assert image == IMAGE, name
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name}: build context {context}"
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_commands_are_real_bbingest_commands() -> None:
    known = subcommands()
    for name, service in app_services().items():
        argv = compose_command(service)
        assert argv, f"{name}: no command"
        assert argv[0] in known, f"{name}: bbingest has no command {argv[0]!r}"
        parses(argv)


def test_compose_depends_on_healthy_services_and_a_finished_migration() -> None:
    services = compose_services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, rule in depends.items():
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}'s health"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    for name, service in app_services().items():
        if compose_command(service)[0] in {"worker", "serve"}:
            depends = service["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["postgres"]["condition"] == "service_healthy", name
            assert depends["redis"]["condition"] == "service_healthy", name


def test_compose_reaches_the_emulator_over_loopback_only() -> None:
    services = compose_services()
    emulator = parses(compose_command(services["emulator"]))
    namespaces: dict[str, list[int]] = {"emulator": [emulator.port]}
    for name, service in app_services().items():
        url = compose_environment(service).get("BB_BASE_URL")
        if url is None:
            continue
        scheme, _, rest = url.partition("://")
        host, _, port = rest.partition(":")
        assert scheme == "http", f"{name}: {url}"
        assert is_loopback_host(host), f"{name}: {url}"
        # Loopback is the emulator's only when the worker lives in its network namespace.
        assert service["network_mode"] == "service:emulator", name
        assert int(port) == emulator.port, name
        namespaces["emulator"].append(int(setting_from_compose(service, "METRICS_PORT")))
    listening = namespaces["emulator"]
    assert len(listening) >= 3, "the workers should use the emulator over loopback"
    assert len(listening) == len(set(listening)), f"two processes bind one port: {listening}"
    published = {str(p).rsplit(":", 1)[-1] for p in services["emulator"].get("ports", [])}
    assert {str(port) for port in listening} <= published


def setting_from_compose(service: dict[str, Any], name: str) -> str:
    return compose_environment(service).get(name, str(setting_default(name)))


def test_compose_secrets_come_from_the_env_file() -> None:
    for name, service in compose_services().items():
        for key, value in compose_environment(service).items():
            for text in (key, value):
                match = DSN_PASSWORD.search(text)
                if match:
                    password = match.group("password")
                    assert REQUIRED_INTERPOLATION.match(password), f"{name}: {key}"
            if key in {*SECRET_SETTINGS, "POSTGRES_PASSWORD"} - {"DATABASE_URL"}:
                match = REQUIRED_INTERPOLATION.match(value)
                assert match, f"{name}: {key} is not read from deploy/.env"
                assert match.group("name") == key, f"{name}: {key} = {value!r}"
    assert (DEPLOY / ".gitignore").read_text(encoding="utf-8").split().count(".env") == 1


@pytest.mark.parametrize(
    ("command", "needed"),
    [
        ("worker", {"DATABASE_URL", "REDIS_URL", "TOKEN_ENCRYPTION_KEY", "BB_CLIENT_SECRET"}),
        ("serve", {"INTAKE_SECRET", "REDIS_URL"}),
        ("migrate", {"DATABASE_URL"}),
    ],
)
def test_compose_settings_are_complete_and_valid(command: str, needed: set[str]) -> None:
    services = [s for s in app_services().values() if compose_command(s)[0] == command]
    assert services
    for service in services:
        env = {
            key: re.sub(r"\$\{[^}]*\}", "x" * 44, value)
            for key, value in compose_environment(service).items()
        }
        assert needed <= set(env), f"{command}: missing {needed - set(env)}"
        load_settings(env)


def test_compose_containers_are_non_root_and_workers_stop_gracefully() -> None:
    for name, service in app_services().items():
        user = str(service["user"]).split(":")[0]
        assert user not in {"0", "root", ""}, name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True, name
    for name, service in app_services().items():
        if compose_command(service)[0] == "worker":
            grace = float(setting_from_compose(service, "WORKER_SHUTDOWN_GRACE"))
            period = duration_seconds(service["stop_grace_period"])
            assert period >= grace + SHUTDOWN_MARGIN_SECONDS, name
