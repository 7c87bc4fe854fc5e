"""Structural checks of deploy/: the image, the compose stack, the Helm chart and docs/deploy.md
agree with the code they deploy (setting names, topic and consumer-group naming, services and
their categories, migrations).

Nothing here runs Docker, helm or the sandbox: files are read as text and YAML. helm is not
installed, so the chart is built for checking without it: every per-worker object comes from a
`range` over `.Values.workers` (values.yaml listing every category service is what gives each
one its Deployment and HPA), and templates are parsed as YAML with their `{{ }}` actions
blanked out. The topic and group names live in one-line helpers in `_helpers.tpl`, rendered
here by substitution and compared with `runmesh.core.topics.Topics` and the worker's group.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from runmesh.core.kafka import clients as kafka_clients
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.plugins import PluginRegistry
from runmesh.worker import Worker
from runmesh.worker.service import load_service

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKER_DIR = DEPLOY / "docker"
CHART = DEPLOY / "helm" / "runmesh"
TEMPLATES = CHART / "templates"
DOCS = ROOT / "docs" / "deploy.md"

SERVICES = sorted(
    path.name for path in (ROOT / "services").iterdir() if (path / "pyproject.toml").is_file()
)
WORKER_SERVICES = [service for service in SERVICES if service != "gateway"]

# Standard variables a deployment may set besides the RUNMESH_* settings: the OTLP exporter and
# the OTel resource read these, botocore the AWS ones (runmesh reads no others).
STANDARD_ENV = frozenset(
    {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
    }
)
ENV_NAME = re.compile(r"\b(?:RUNMESH|OTEL|AWS)_[A-Z0-9_]*[A-Z0-9]\b")
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Headers and framing runmesh allows on top of a record's value (the producer's request bound).
RECORD_OVERHEAD_BYTES: int = getattr(kafka_clients, "_RECORD_OVERHEAD_BYTES", 64 * 1024)


# -- helpers ------------------------------------------------------------------------------------
def settings_env_names() -> dict[str, str]:
    """Every variable `Settings` reads, mapped to its field name."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names[alias or f"RUNMESH_{field_name.upper()}"] = field_name
    return names


def unknown_env_names(text: str) -> set[str]:
    """RUNMESH_*, OTEL_* and AWS_* names in `text` that nothing reads."""
    known = settings_env_names().keys() | STANDARD_ENV
    return set(ENV_NAME.findall(text)) - known


def category_of(service: str) -> str:
    """The category a service's `python -m runmesh.<service>` consumes (its declared
    `Service`'s: its built-in plugin's `config.yaml`)."""
    return load_service(f"runmesh.{service}:service").category


def project_name(member: Path) -> str:
    data = tomllib.loads((member / "pyproject.toml").read_text())
    name = data["project"]["name"]
    assert isinstance(name, str)
    return name


def workspace_members() -> list[str]:
    """Workspace members as paths relative to the root (the globs of [tool.uv.workspace])."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in data["tool"]["uv"]["workspace"]["members"]:
        for path in sorted(ROOT.glob(pattern)):
            if (path / "pyproject.toml").is_file():
                members.append(path.relative_to(ROOT).as_posix())
    return members


def settings_from(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`Settings` as a process with exactly these variables (of ours) would build them."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value).lower() if isinstance(value, bool) else str(value))
    return Settings()


def default(field: str) -> Any:
    """A setting's default, whatever this process's environment says."""
    return Settings.model_fields[field].get_default(call_default_factory=True)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- Dockerfile ----------------------------------------------------------------------------------
def dockerfiles() -> list[Path]:
    found = sorted(DOCKER_DIR.glob("*Dockerfile")) + sorted(DOCKER_DIR.glob("*.Dockerfile"))
    return sorted(set(found))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, arguments = full.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{path}: a continuation line ends the file"
    return result


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert starts, "no FROM"
    return steps[starts[-1] :]


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in steps:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def with_arg_defaults(text: str, steps: list[tuple[str, str]]) -> str:
    """`text` with `${NAME}` replaced by the default of `ARG NAME=default`."""
    defaults = dict(
        arguments.split("=", 1)
        for keyword, arguments in steps
        if keyword == "ARG" and "=" in arguments
    )
    return re.sub(r"\$\{?(\w+)\}?", lambda match: defaults[match.group(1)], text)


@pytest.fixture(scope="module")
def dockerfile_list() -> list[Path]:
    found = dockerfiles()
    assert found, "deploy/docker has no Dockerfile"
    return found


def test_dockerfile_runtime_is_unprivileged_with_a_healthcheck(dockerfile_list: list[Path]) -> None:
    compose_healthchecks = all(
        "healthcheck" in service for service in compose_runmesh_services().values()
    )
    for path in dockerfile_list:
        runtime = final_stage(instructions(path))
        users = [arguments for keyword, arguments in runtime if keyword == "USER"]
        assert users, f"{path.name}: the runtime stage sets no USER (it would run as root)"
        user, _, group = users[-1].partition(":")
        assert user not in {"root", "0"}, f"{path.name}: runs as {users[-1]}"
        assert group not in {"root", "0"}, f"{path.name}: runs in group {users[-1]}"
        has_healthcheck = any(
            keyword == "HEALTHCHECK" and not arguments.upper().startswith("NONE")
            for keyword, arguments in runtime
        )
        assert has_healthcheck or compose_healthchecks, f"{path.name}: no health check anywhere"
        env = env_of(runtime)
        assert env.get("PATH", "").startswith("/app/.venv/bin:"), f"{path.name}: PATH={env}"
        image = next(arguments for keyword, arguments in runtime if keyword == "FROM").split()[0]
        image = with_arg_defaults(image, instructions(path))
        assert image.startswith("python:3.11-slim"), f"{path.name}: runtime image {image}"


def test_dockerfile_installs_the_locked_service_with_a_pinned_uv(
    dockerfile_list: list[Path],
) -> None:
    for path in dockerfile_list:
        steps = instructions(path)
        text = path.read_text()
        assert re.search(r"COPY --from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ /uv /bin/uv", text), (
            f"{path.name}: uv is not copied from a pinned ghcr.io/astral-sh/uv image"
        )
        syncs = [
            (index, arguments)
            for index, (keyword, arguments) in enumerate(steps)
            if keyword == "RUN" and "uv sync" in arguments
        ]
        assert syncs, f"{path.name}: no `uv sync`"
        for _, arguments in syncs:
            for flag in ("--locked", "--no-dev", "--package"):
                assert flag in arguments, f"{path.name}: `uv sync` without {flag}: {arguments}"
        assert any("--no-editable" in arguments for _, arguments in syncs), (
            f"{path.name}: the members must be installed as wheels (--no-editable)"
        )
        # --locked checks uv.lock against every member: each pyproject.toml must be there.
        first_sync = syncs[0][0]
        copied = " ".join(
            arguments for keyword, arguments in steps[:first_sync] if keyword == "COPY"
        )
        for member in ["", *workspace_members()]:
            pyproject = f"{member}/pyproject.toml" if member else "pyproject.toml"
            assert re.search(rf"(^|\s){re.escape(pyproject)}(\s|$)", copied), (
                f"{path.name}: {pyproject} is not copied before the first `uv sync`"
            )
        assert re.search(r"(^|\s)uv\.lock(\s|$)", copied), f"{path.name}: uv.lock not copied"
        assert env_of(steps).get("UV_PROJECT_ENVIRONMENT") == "/app/.venv"


def test_dockerfile_derives_real_package_and_module_names() -> None:
    """SERVICE=to_task → member runmesh-to-task, module runmesh.to_task."""
    text = (DOCKER_DIR / "Dockerfile").read_text()
    assert 'runmesh-$(echo "${SERVICE}" | tr _ -)' in text
    assert 'APP_MODULE="runmesh.${SERVICE}"' in text
    for service in SERVICES:
        member = ROOT / "services" / service
        assert project_name(member) == f"runmesh-{service.replace('_', '-')}"
        assert importlib.util.find_spec(f"runmesh.{service}.__main__") is not None, service


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    ignore = [
        line.strip()
        for line in (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "**", "the context should start empty: .venv and .git stay out"
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, arguments in instructions(DOCKER_DIR / "Dockerfile"):
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _destination = shlex.split(arguments)
        for source in sources:
            parts = Path(source).parts
            assert any("/".join(parts[:n]) in kept for n in range(1, len(parts) + 1)), (
                f"{source} is copied but left out of the build context"
            )


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "runmesh_deploy_healthcheck", DOCKER_DIR / "healthcheck.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_probes_the_gateway_and_the_worker_health() -> None:
    healthcheck = load_healthcheck()
    gateway = healthcheck.health_url(Settings(gateway_port=8601), "runmesh.gateway")
    assert gateway == "http://127.0.0.1:8601/healthz"
    worker = healthcheck.health_url(Settings(metrics_port=9100), "runmesh.upload")
    assert worker == "http://127.0.0.1:9100/healthz"
    with pytest.raises(SystemExit, match="RUNMESH_METRICS_PORT"):
        healthcheck.health_url(Settings(metrics_port=None), "runmesh.train")


# -- docker-compose.yml ---------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def compose_runmesh_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository (the others are infrastructure images)."""
    return {name: spec for name, spec in compose()["services"].items() if "build" in spec}


def image_default(image: str) -> str:
    """`${VAR:-default}` → default."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", image)
    return match.group(1) if match else image


def test_compose_runs_every_service_with_build_env_healthcheck_restart() -> None:
    services = compose()["services"]
    runmesh = compose_runmesh_services()
    assert sorted(runmesh) == SERVICES
    for name, spec in runmesh.items():
        build = spec["build"]
        assert build["args"]["SERVICE"] == name
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
        assert spec.get("image"), name
        assert isinstance(spec.get("environment"), dict) and spec["environment"], name
        healthcheck = spec.get("healthcheck", {})
        assert healthcheck.get("test") and not healthcheck.get("disable"), name
        assert spec.get("restart") in RESTART_POLICIES, name
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing {dependency}"
            assert condition.get("condition") in DEPENDS_CONDITIONS, (name, dependency)
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_workers_run_two_replicas_with_metrics_and_plugin_cache() -> None:
    runmesh = compose_runmesh_services()
    for service in WORKER_SERVICES:
        spec = runmesh[service]
        assert spec.get("deploy", {}).get("replicas") == 2, service
        env = spec["environment"]
        assert env.get("RUNMESH_METRICS_PORT"), service
        cache = env.get("RUNMESH_PLUGIN_CACHE_DIR")
        assert cache, service
        mounts = [volume.split(":")[1] for volume in spec.get("volumes", [])]
        assert any(cache == mount or cache.startswith(mount + "/") for mount in mounts), (
            f"{service}: the plugin cache {cache} is not on a volume ({mounts})"
        )
    gateway = runmesh["gateway"]
    assert gateway["environment"]["RUNMESH_GATEWAY_HOST"] == "0.0.0.0"
    assert "deploy" not in gateway or gateway["deploy"].get("replicas", 1) >= 1


def test_compose_environment_is_valid_settings_for_real_infrastructure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, spec in compose_runmesh_services().items():
        env = spec["environment"]
        settings = settings_from(env, monkeypatch)  # types: a bad value fails here
        assert settings.kafka_bootstrap and settings.database_url, name
        assert settings.s3_endpoint_url and settings.s3_access_key_id, name
        assert settings.kafka_idempotence, f"{name}: idempotence belongs on with real Kafka"
        assert settings.otel_exporter_otlp_endpoint, name
        collector_host = settings.otel_exporter_otlp_endpoint.split("//")[1].split(":")[0]
        assert collector_host in compose()["services"], collector_host


def test_compose_infrastructure_is_pinned_kraft_kafka_and_otel_to_jaeger() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        if "build" in spec:
            continue
        image = image_default(spec["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
    kafka = services["kafka"]
    assert image_default(kafka["image"]).startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    largest_request = default("max_message_bytes") + RECORD_OVERHEAD_BYTES
    assert int(kafka["environment"]["KAFKA_MESSAGE_MAX_BYTES"]) >= largest_request
    assert image_default(services["postgres"]["image"]).startswith("postgres:")
    assert "minio" in image_default(services["minio"]["image"])
    assert "mc" in image_default(services["minio-init"]["image"])
    assert image_default(services["jaeger"]["image"]).startswith("jaegertracing/all-in-one:")
    collector = services["otel-collector"]
    assert image_default(collector["image"]).startswith("otel/opentelemetry-collector-contrib:")
    mounted = [volume.split(":")[0] for volume in collector["volumes"]]
    config_path = COMPOSE.parent / mounted[0]
    assert config_path == DEPLOY / "otel-collector.yaml"
    config = load_yaml(config_path)
    assert "http" in config["receivers"]["otlp"]["protocols"]  # runmesh exports OTLP/HTTP
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert any(
        config["exporters"][exporter]["endpoint"].startswith("jaeger:") for exporter in exporters
    )


def test_compose_kafka_init_creates_every_category_topic_and_keeps_plugins() -> None:
    script = "\n".join(compose()["services"]["kafka-init"]["command"])
    match = re.search(r"for category in ([^;]+);", script)
    assert match, "kafka-init loops over no categories"
    assert sorted(match.group(1).split()) == sorted(category_of(s) for s in WORKER_SERVICES)
    assert re.search(r'topic "\$\$p\.plugins" -1\b', script), "plugins must keep its records"
    for name in ("events", "control"):
        assert f'"$$p.{name}"' in script


# -- Helm chart ---------------------------------------------------------------------------------
_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.S)
_ACTION = re.compile(r"\{\{.*?\}\}")


def blank_template(text: str) -> str:
    """The template as YAML: lines of actions only dropped, inline actions replaced by `X`."""
    lines = []
    for line in _COMMENT.sub("", text).splitlines():
        stripped = line.strip()
        if stripped.startswith("{{") and not _ACTION.sub("", stripped).strip():
            continue
        lines.append(_ACTION.sub("X", line))
    return "\n".join(lines)


def template_documents(name: str) -> list[dict[str, Any]]:
    text = blank_template((TEMPLATES / name).read_text())
    return [document for document in yaml.safe_load_all(text) if document]


def helm_define(name: str) -> str:
    text = (TEMPLATES / "_helpers.tpl").read_text()
    match = re.search(
        r'\{\{-? define "' + re.escape(name) + r'" -?\}\}(.*?)\{\{-? end -?\}\}', text, re.S
    )
    assert match, f"_helpers.tpl defines no {name}"
    return match.group(1).strip()


def render_define(name: str, context: dict[str, str]) -> str:
    """A one-line helper rendered: `{{ .key }}` and `{{ include "other" . }}` substituted."""
    body = helm_define(name)
    body = re.sub(
        r'\{\{-?\s*include "([\w.]+)" \.\s*-?\}\}',
        lambda match: render_define(match.group(1), context),
        body,
    )
    body = re.sub(r"\{\{-?\s*\.(\w+)\s*-?\}\}", lambda match: context[match.group(1)], body)
    assert "{{" not in body, f"{name}: not a one-line helper of .prefix/.category/.name: {body}"
    return body


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    data = load_yaml(CHART / "values.yaml")
    assert isinstance(data, dict)
    return data


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "runmesh"
    assert chart["version"] and chart["appVersion"]


def test_every_template_is_yaml_once_its_actions_are_blanked() -> None:
    kinds: set[str] = set()
    for path in sorted(TEMPLATES.glob("*.yaml")):
        documents = template_documents(path.name)
        assert documents, f"{path.name} holds no object"
        for document in documents:
            assert document.get("apiVersion") and document.get("kind"), path.name
            kinds.add(document["kind"])
    expected = {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "Job",
    }
    assert expected <= kinds, expected - kinds


def test_every_category_service_has_a_deployment_and_an_hpa(values: dict[str, Any]) -> None:
    workers = values["workers"]
    assert sorted(workers) == WORKER_SERVICES, "values.yaml workers ≠ the services/ workers"
    for service in WORKER_SERVICES:
        worker = workers[service]
        assert worker["category"] == category_of(service), service
        # The HPA renders for a worker with autoscaling on and KEDA off (the default).
        assert worker["autoscaling"]["enabled"] is True, service
        assert worker["keda"]["enabled"] is False, service
        autoscaling = worker["autoscaling"]
        assert 1 <= autoscaling["minReplicas"] <= autoscaling["maxReplicas"], service
        assert worker["resources"]["requests"] and worker["resources"]["limits"], service
        assert worker["terminationGracePeriodSeconds"] > default("shutdown_grace_s"), service
    per_worker = re.compile(r"\{\{-? range \$service, \$w := \.Values\.workers \}\}")
    deployments = (TEMPLATES / "worker-deployments.yaml").read_text()
    assert per_worker.search(deployments)
    assert [doc["kind"] for doc in template_documents("worker-deployments.yaml")] == ["Deployment"]
    hpa = (TEMPLATES / "worker-hpa.yaml").read_text()
    assert per_worker.search(hpa)
    (document,) = template_documents("worker-hpa.yaml")
    assert document["kind"] == "HorizontalPodAutoscaler"
    assert document["apiVersion"] == "autoscaling/v2"
    assert document["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "if and $w.autoscaling.enabled (not $w.keda.enabled)" in hpa


def test_deployments_probe_run_unprivileged_and_read_config_and_secret(
    values: dict[str, Any],
) -> None:
    (gateway,) = template_documents("gateway-deployment.yaml")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert values["gateway"]["readinessPath"] == "/readyz"
    assert (
        "{{ .Values.gateway.readinessPath }}" in (TEMPLATES / "gateway-deployment.yaml").read_text()
    )
    assert values["gateway"]["resources"]["requests"] and values["gateway"]["resources"]["limits"]
    (worker,) = template_documents("worker-deployments.yaml")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    env = {item["name"] for item in container["env"]}
    assert {"RUNMESH_METRICS_PORT", "RUNMESH_PLUGIN_CACHE_DIR"} <= env
    for name in ("gateway-deployment.yaml", "worker-deployments.yaml"):
        text = (TEMPLATES / name).read_text()
        assert "configMapRef" in text and "secretRef" in text, name
    for name in (
        "gateway-deployment.yaml",
        "worker-deployments.yaml",
        "migrations-job.yaml",
        "kafka-topics-job.yaml",
    ):
        text = (TEMPLATES / name).read_text()
        assert "toYaml .Values.podSecurityContext" in text or (
            "toYaml $.Values.podSecurityContext" in text
        ), name
        assert "toYaml .Values.securityContext" in text or (
            "toYaml $.Values.securityContext" in text
        ), name
    pod = values["podSecurityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] not in (0, None)
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    (service,) = template_documents("gateway-service.yaml")
    assert service["kind"] == "Service"


def test_chart_settings_are_real_and_secrets_stay_in_the_secret(values: dict[str, Any]) -> None:
    names = settings_env_names()
    for key in values["config"]:
        assert key in names or key in STANDARD_ENV, f"config.{key} is not a setting"
        field = names.get(key)
        if field is not None:
            annotation = str(Settings.model_fields[field].annotation)
            assert "SecretStr" not in annotation, f"{key} is secret: put it in secretEnv"
        assert key != "RUNMESH_DATABASE_URL", "the DSN holds a password: put it in secretEnv"
    for key in values["secretEnv"]:
        assert key in names, f"secretEnv.{key} is not a setting"
    # The check above recognises secret settings by their type:
    for secret_field in ("s3_secret_access_key", "kafka_sasl_password"):
        secret_type = Settings.model_fields[secret_field].annotation
        assert SecretStr in getattr(secret_type, "__args__", ()), secret_field
    assert str(values["config"]["RUNMESH_KAFKA_IDEMPOTENCE"]).lower() == "true"
    assert int(values["config"]["RUNMESH_TOPIC_REPLICATION_FACTOR"]) == 3


def test_helm_topic_and_group_names_follow_topics(values: dict[str, Any]) -> None:
    prefix_default = re.search(r'default "([^"]+)"', helm_define("runmesh.topicPrefix"))
    assert prefix_default and prefix_default.group(1) == default("topic_prefix")
    for prefix in ("runmesh", "acme"):
        topics = Topics(prefix)
        for service in WORKER_SERVICES:
            category = category_of(service)
            names = {"prefix": prefix, "category": category}
            assert render_define("runmesh.requestTopic", names) == topics.requests(category)
            assert render_define("runmesh.dlqTopic", names) == topics.dlq(category)
            group = Worker(category, PluginRegistry(), Settings(topic_prefix=prefix)).group_id
            assert render_define("runmesh.consumerGroup", names) == group
        for name in ("events", "control", "plugins", "pipelines", "workers"):
            rendered = render_define("runmesh.topic", {"prefix": prefix, "name": name})
            assert rendered == getattr(topics, name)
    keda = (TEMPLATES / "worker-keda.yaml").read_text()
    assert 'consumerGroup: {{ include "runmesh.consumerGroup" $names | quote }}' in keda
    assert 'topic: {{ include "runmesh.requestTopic" $names | quote }}' in keda
    assert '"category" $w.category' in keda
    (scaled,) = template_documents("worker-keda.yaml")
    assert scaled["spec"]["triggers"][0]["type"] == "kafka"
    topics_job = (TEMPLATES / "kafka-topics-job.yaml").read_text()
    for helper in ("runmesh.requestTopic", "runmesh.dlqTopic"):
        assert f'include "{helper}" $names' in topics_job
    for name in ("plugins", "events", "control", "pipelines", "workers"):
        assert f'"name" "{name}"' in topics_job


def test_kafka_topics_keep_plugins_and_fit_runmesh_records(values: dict[str, Any]) -> None:
    topics = values["kafkaTopics"]
    assert str(topics["retentionMs"]["plugins"]) == "-1", "workers read plugins from the start"
    largest_request = default("max_message_bytes") + RECORD_OVERHEAD_BYTES
    assert int(topics["maxMessageBytes"]) >= largest_request
    replication = int(values["config"]["RUNMESH_TOPIC_REPLICATION_FACTOR"])
    assert int(topics["minInsyncReplicas"]) < replication, "a broker down would stop writes"
    (job,) = template_documents("kafka-topics-job.yaml")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def migration_packages() -> set[str]:
    """Every package that ships versioned SQL migrations (`<package>/migrations/NNNN_*.sql`)."""
    found: set[str] = set()
    for sql in ROOT.glob("*/*/src/runmesh/**/migrations/[0-9][0-9][0-9][0-9]_*.sql"):
        package_dir = sql.parent.parent
        src = next(parent for parent in package_dir.parents if parent.name == "src")
        found.add(".".join(package_dir.relative_to(src).parts))
    return found


def test_migrations_job_applies_every_schema_the_processes_apply() -> None:
    from runmesh.catalog import SCHEMA as CATALOG_SCHEMA
    from runmesh.gateway.app import SCHEMA as RUNS_SCHEMA
    from runmesh.worker.ledger import SCHEMA as WORKER_SCHEMA

    documents = template_documents("migrations-job.yaml")
    (job,) = [document for document in documents if document["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    script = container["command"][2]
    tree = ast.parse(script)  # the script itself must be valid Python
    compile(tree, "migrations-job", "exec")
    (assignment,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(
            isinstance(target, ast.Name) and target.id == "MIGRATIONS" for target in node.targets
        )
    ]
    migrations = dict(ast.literal_eval(assignment.value))
    expected = {
        RUNS_SCHEMA: "runmesh.gateway",
        CATALOG_SCHEMA: "runmesh.catalog",
        WORKER_SCHEMA: "runmesh.worker",
    }
    assert migrations == expected
    assert set(migrations.values()) == migration_packages(), "a migrations package is missing"


# -- every deploy file and docs/deploy.md --------------------------------------------------------
def deploy_texts() -> Iterator[tuple[Path, str]]:
    paths = [COMPOSE, DOCS, *sorted(DOCKER_DIR.iterdir()), *sorted(CHART.rglob("*"))]
    for path in paths:
        if path.is_file():
            yield path, path.read_text()


def test_every_env_name_in_deploy_and_its_docs_is_a_real_setting() -> None:
    assert DOCS.is_file(), "docs/deploy.md is missing"
    problems = {
        str(path.relative_to(ROOT)): sorted(unknown)
        for path, text in deploy_texts()
        if (unknown := unknown_env_names(text))
    }
    assert not problems, f"variables nothing reads (typos?): {problems}"


def test_env_name_check_catches_a_typo() -> None:
    assert unknown_env_names("RUNMESH_KAFKA_BOOTSTRAPS: kafka:9092") == {"RUNMESH_KAFKA_BOOTSTRAPS"}
    assert unknown_env_names("OTEL_EXPORTER_OTLP_ENDPIONT=x") == {"OTEL_EXPORTER_OTLP_ENDPIONT"}
    assert not unknown_env_names("RUNMESH_KAFKA_BOOTSTRAP OTEL_EXPORTER_OTLP_ENDPOINT RUNMESH_*")
