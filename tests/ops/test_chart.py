"""The Helm chart rendered by Helm 4's own engine (helm-python-sdk, offline) for each
database mode, with the properties asserted on the parsed manifests; `helm lint --strict`
passes and the strict values schema rejects misspelt keys."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from tests.support import REPO

CHART = str(REPO / "helm" / "appliance")
EXTERNAL = {"database": {"mode": "external", "external": {"existingSecret": "pg-url"}}}
BUNDLED = {"database": {"mode": "bundled"}, "replicaCount": 2}
MODES = {"default": {}, "sqlite": {"database": {"mode": "sqlite"}}, "external": EXTERNAL, "bundled": BUNDLED}


def render(values: dict) -> list[dict]:
    out = helm.Chart.load(CHART).render(values=values, name="demo", namespace="apps", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def one(docs, kind, component=None):
    found = [d for d in docs if d["kind"] == kind
             and (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, (kind, component, [d["metadata"]["name"] for d in found])
    return found[0]


def env_of(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("mode", list(MODES))
def test_api_deployment_hardening_probes_and_labels(mode):
    docs = render(MODES[mode])
    deployment = one(docs, "Deployment", "api")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"api", "notifier"}
    for container in containers.values():
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"/data", "/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]}
        assert "APPLIANCE_DATABASE_URL" in env_of(container) and "APPLIANCE_SECRET_KEY" in env_of(container)
    api = containers["api"]
    assert api["args"] == ["serve"]
    assert api["startupProbe"]["httpGet"]["path"] == "/api/health"
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert api["resources"]["requests"] and api["resources"]["limits"]
    notifier = containers["notifier"]
    assert notifier["args"] == ["notifier"]
    assert notifier["livenessProbe"]["exec"]["command"] == ["appliance", "notifier", "--check"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(annotations)
    labels = deployment["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"):
        assert key in labels
    # Selectors hold only labels that never change between releases.
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "appliance", "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/component": "api"}
    service = one(docs, "Service", "api")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    account = one(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_sqlite_mode_pvc_one_replica_recreate():
    docs = render({})
    deployment = one(docs, "Deployment", "api")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pvc = one(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    api = deployment["spec"]["template"]["spec"]["containers"][0]
    assert env_of(api)["APPLIANCE_DATABASE_URL"]["value"] == "sqlite:////data/appliance.db"
    assert not [d for d in docs if d["kind"] in ("PodDisruptionBudget", "StatefulSet")]


def test_sqlite_with_more_replicas_fails_the_render_clearly():
    with pytest.raises(helm.HelmError, match="sqlite supports exactly one replica"):
        render({"replicaCount": 3})


def test_external_postgres_from_an_existing_secret():
    docs = render(EXTERNAL)
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(api)["APPLIANCE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "pg-url", "key": "database-url"}
    assert one(docs, "Deployment", "api")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not [d for d in docs if d["kind"] in ("StatefulSet", "PersistentVolumeClaim")]
    with pytest.raises(helm.HelmError, match="existingSecret"):
        render({"database": {"mode": "external"}})


def test_bundled_postgres_statefulset_generated_password_and_pg_trgm():
    docs = render(BUNDLED)
    statefulset = one(docs, "StatefulSet", "postgresql")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    password = one(docs, "Secret", "postgresql")
    assert password["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(password["data"]["password"]) >= 32
    init = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-init")][0]
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in init["data"]["01-pg-trgm.sql"]
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True} in mounts
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert "$(POSTGRES_PASSWORD)@demo-appliance-postgresql:5432/appliance" in env_of(api)["APPLIANCE_DATABASE_URL"]["value"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    # Generated secrets are looked up first, so upgrades keep them (lookup is empty offline).
    source = (REPO / "helm" / "appliance" / "templates" / "secrets.yaml").read_text()
    assert source.count("lookup \"v1\" \"Secret\"") == 2


def test_generated_encryption_key_is_a_fernet_key():
    import base64

    from cryptography.fernet import Fernet

    secret = [d for d in render({}) if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-secret-key")][0]
    key = base64.b64decode(secret["data"]["secret-key"])
    Fernet(key)  # raises when malformed
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    provided = render({"secretKey": {"existingSecret": "mine", "key": "k"}})
    assert not [d for d in provided if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-secret-key")]
    api = one(provided, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(api)["APPLIANCE_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "k"}


def test_helm_test_pod_and_migration_job_hooks():
    docs = render({**EXTERNAL, "migrationJob": {"enabled": True}, "ingress": {"enabled": True}})
    test_pod = one(docs, "Pod", "test")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = test_pod["spec"]["containers"][0]["command"][-1]
    assert "/health" in script and "/ready" in script and "demo-appliance:4200" in script
    job = one(docs, "Job", "migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["database", "upgrade", "-y"]
    assert one(docs, "Ingress")["spec"]["rules"][0]["host"] == "appliance.local"
    with pytest.raises(helm.HelmError, match="migrationJob needs PostgreSQL"):
        render({"migrationJob": {"enabled": True}})


@pytest.mark.parametrize("values", [{"replicaCount": 1, "replicas": 2}, {"database": {"mode": "sqllite"}},
                                    {"image": {"repository": "x", "tga": "1"}}, {"settings": {"logLevel": "loud"}}])
def test_schema_rejects_unknown_or_misspelt_values(values):
    with pytest.raises(helm.HelmError):
        helm.Chart.load(CHART).validate_schema(values)


@pytest.mark.parametrize("mode", list(MODES))
def test_helm_lint_strict_passes(mode):
    report = helm.lint(CHART, MODES[mode], strict=True)
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2], report


def test_metrics_service_monitor_off_by_default_and_scrapes_api_and_notifier():
    docs = render({})
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    config = one(docs, "ConfigMap")["data"]
    assert config["APPLIANCE_METRICS_ENABLED"] == "true" and config["APPLIANCE_NOTIFIER_METRICS_PORT"] == "9464"
    containers = {c["name"]: c for c in one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"]}
    assert containers["notifier"]["ports"] == [{"name": "notifier-metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert {p["name"] for p in one(docs, "Service", "api")["spec"]["ports"]} == {"http", "notifier-metrics"}

    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}})
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "kps"
    service = one(docs, "Service", "api")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert endpoints["http"]["path"] == "/api/metrics" and endpoints["notifier-metrics"]["path"] == "/metrics"
    assert "basicAuth" not in endpoints["http"]

    # Behind basic auth the scrape needs credentials, and says so when they are missing.
    authed = {"auth": {"existingSecret": "api-auth"}, "metrics": {"serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmError, match="basicAuthSecret"):
        render(authed)
    authed["metrics"]["serviceMonitor"]["basicAuthSecret"] = "scrape-auth"
    http = {e["port"]: e for e in one(render(authed), "ServiceMonitor")["spec"]["endpoints"]}["http"]
    assert http["basicAuth"] == {"username": {"name": "scrape-auth", "key": "username"},
                                 "password": {"name": "scrape-auth", "key": "password"}}

    # No notifier metrics port: neither the container port nor the endpoint.
    docs = render({"metrics": {"notifierPort": 0, "serviceMonitor": {"enabled": True}}})
    assert [e["port"] for e in one(docs, "ServiceMonitor")["spec"]["endpoints"]] == ["http"]
    assert "APPLIANCE_NOTIFIER_METRICS_PORT" not in one(docs, "ConfigMap")["data"]
    report = helm.lint(CHART, {"metrics": {"serviceMonitor": {"enabled": True}}}, strict=True)
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2], report
    with pytest.raises(helm.HelmError):
        helm.Chart.load(CHART).validate_schema({"metrics": {"serviceMonitor": {"enabeld": True}}})


def test_retention_and_log_format_settings_reach_the_environment():
    config = one(render({}), "ConfigMap")["data"]
    assert config["APPLIANCE_RETENTION_EVENTS"] == "7d" and config["APPLIANCE_RETENTION_FLOW_RUNS"] == "off"
    assert config["APPLIANCE_LOG_FORMAT"] == "text"
    values = {"settings": {"logFormat": "json", "retention": {"flowRuns": "30d", "notifications": "14d"}}}
    config = one(render(values), "ConfigMap")["data"]
    assert config["APPLIANCE_RETENTION_FLOW_RUNS"] == "30d" and config["APPLIANCE_RETENTION_NOTIFICATIONS"] == "14d"
    assert config["APPLIANCE_RETENTION_EVENTS"] == "7d" and config["APPLIANCE_LOG_FORMAT"] == "json"
    # The settings' own parser accepts what the chart renders.
    from appliance.settings import Settings

    env = {k.removeprefix("APPLIANCE_").lower(): v for k, v in config.items() if k.startswith("APPLIANCE_RETENTION")}
    parsed = Settings(**env)
    assert parsed.retention_flow_runs.days == 30 and parsed.retention_workers is None


@pytest.mark.parametrize("duration", ["7 days", "-1d", 7])
def test_schema_rejects_a_retention_that_is_not_a_duration(duration):
    with pytest.raises(Exception, match="retention|events|pattern|string"):
        render({"settings": {"retention": {"events": duration}}})
