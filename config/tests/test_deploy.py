"""The deployment artifacts, validated by tools rather than by eye: the compose file against
the compose-spec schema, the Kubernetes manifests against the API schemas, nginx.conf with
``nginx -t``, and the promises of the Dockerfile and the gunicorn settings."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.30.0"
LONG_RUNNING = ("postgres", "redis", "web", "worker", "beat", "nginx")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_errors(document: dict) -> list[str]:
    schema = json.loads((ROOT / "deploy" / "compose-spec.json").read_text())
    return [error.message for error in jsonschema.Draft201909Validator(schema).iter_errors(document)]


def manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((ROOT / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def test_the_compose_file_follows_the_compose_spec():
    assert compose_errors(compose()) == []
    broken = compose()
    broken["services"]["web"]["restart"] = 5
    broken["services"]["web"]["healthcheck"]["retries"] = "many"
    assert len(compose_errors(broken)) == 2, "the schema check does catch mistakes"


def test_the_compose_stack_has_every_service_healthchecked_with_named_volumes():
    document = compose()
    services = document["services"]
    assert set(LONG_RUNNING) | {"migrate"} == set(services)
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert set(document["volumes"]) == {"pgdata", "redisdata", "static"}
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["env_file"] == ".env"
    example = (ROOT / ".env.example").read_text()
    for variable in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), variable


def test_every_kubernetes_manifest_is_valid_for_the_api():
    documents = manifests()
    for _name, document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = sorted(doc["kind"] for _, doc in documents)
    assert kinds.count("Deployment") == 3
    assert {"Service", "Ingress", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"} <= set(kinds)
    broken = by_kind("Deployment")["bnpl-web"] | {"spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_deployments_probe_scale_and_keep_beat_single():
    deployments = by_kind("Deployment")
    web = deployments["bnpl-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    beat = deployments["bnpl-beat"]["spec"]
    assert (beat["replicas"], beat["strategy"]["type"]) == (1, "Recreate")
    for deployment in deployments.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"requests", "limits"} <= set(container["resources"]), deployment["metadata"]["name"]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind("HorizontalPodAutoscaler").values()}
    assert scaled == {"bnpl-web", "bnpl-worker"}
    assert by_kind("Job")["bnpl-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == [
        "migrate",
        "--noinput",
    ]


@pytest.mark.skipif(not shutil.which("nginx"), reason="needs Debian's nginx (installed by .ci/run)")
def test_nginx_conf_passes_nginx_t(tmp_path):
    # The upstream's host name exists only inside the compose network; nginx -t resolves it.
    text = (ROOT / "nginx.conf").read_text().replace("server web:8000;", "server 127.0.0.1:8000;")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    nginx = shutil.which("nginx")
    result = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True, check=False)  # noqa: S603 - nginx -t on a copy of our config  # nosec B603
    assert result.returncode == 0, result.stderr
    assert "limit_req zone=auth" in text
    assert "client_max_body_size 1m;" in text
    assert "proxy_set_header X-Request-ID" in text
    assert "proxy_set_header X-Forwarded-For" in text
    assert 'add_header X-Content-Type-Options "nosniff" always;' in text  # static files, which Django never sees


def test_the_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2
    assert all(stage.endswith("-slim") for stage in stages)
    assert re.search(r"^USER bnpl", text, re.MULTILINE)
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert 'CMD ["gunicorn"' in text


def test_gunicorn_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "4")
    monkeypatch.setenv("PORT", "9001")
    namespace: dict = {}
    exec(compile((ROOT / "config" / "gunicorn.py").read_text(), "gunicorn.py", "exec"), namespace)  # noqa: S102 - our own gunicorn.py  # nosec B102
    assert (namespace["workers"], namespace["threads"], namespace["worker_class"]) == (3, 4, "gthread")
    assert namespace["bind"].endswith(":9001")


def test_the_wsgi_application_imports_the_url_map_before_serving():
    """gunicorn preloads config.wsgi in its master: the URL map (every view) must be imported
    then, not on each forked worker's first request."""
    script = (
        "import sys, config.wsgi; from django.urls import get_resolver; "
        "sys.exit(0 if 'url_patterns' in vars(get_resolver()) and 'bnpl.api.views' in sys.modules else 1)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    assert result.returncode == 0, result.stderr[-2000:]
