"""Deployment checks: the Helm chart rendered by Helm's own library (helm-python-sdk) for
several values files, every manifest validated strictly against the Kubernetes 1.30 schemas
(kubernetes-validate), the chart linted, and the compose file validated against the Compose
specification's schema. No cluster and no Docker engine are involved."""

import json
import os
import shutil

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "helm", "memgpt")
VALUES = ["default", "external-qdrant", "edge-store", "no-gpu", "batch"]
KUBE = "1.30.0"
# The bundled Qdrant chart is fetched by `helm dependency build` on a connected machine and is
# never kept in the repository, so lint reports it missing; nothing else may be reported.
MISSING_DEPENDENCY = "chart directory is missing these dependencies: qdrant"
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def values(name):
    with open(os.path.join(CHART, "ci", f"{name}-values.yaml")) as f:
        return yaml.safe_load(f) or {}


def render(vals, chart=CHART):
    with helm.Chart.load(chart) as c:
        out = c.render(vals, name="demo", namespace="prod")
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend((name, d) for d in yaml.safe_load_all(text) if d)
    return docs


def invalid(docs):
    errors = []
    for name, d in docs:
        try:
            kubernetes_validate.validate(d, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{name} {d['kind']}/{d['metadata']['name']}: {e.message}")
    return errors


def pods(docs):
    """(kind/name, pod spec) of every workload."""
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]) for _, d in docs if d["kind"] in WORKLOADS]


def find(docs, kind, component):
    return [d for _, d in docs if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component]


@pytest.mark.parametrize("name", VALUES)
def test_every_render_validates_strictly_against_kubernetes_1_30(name):
    docs = render(values(name))
    assert len(docs) >= 12
    assert invalid(docs) == []


@pytest.mark.parametrize("name", VALUES)
def test_lint_passes(name):
    report = helm.lint(CHART, values(name), strict=True, kube_version=f"v{KUBE}")
    findings = [m for m in report["messages"] if m["severity"] >= 2 and m["error"] != MISSING_DEPENDENCY]
    assert findings == [], findings
    assert [e for e in report["errors"] if e != MISSING_DEPENDENCY] == []


def test_qdrant_is_a_declared_conditional_dependency_not_a_copy():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    (dep,) = chart["dependencies"]
    assert dep["name"] == "qdrant" and dep["condition"] == "qdrant.enabled"
    assert dep["repository"] == "https://qdrant.github.io/qdrant-helm"
    assert not os.path.exists(os.path.join(CHART, "charts")), "the dependency must not be copied into the repository"


def test_qdrant_url_falls_back_to_the_documented_service_name():
    def url(vals):
        (cm,) = find(render(vals), "ConfigMap", "memory")
        return cm["data"]["MEMGPT_MEMORY_QDRANT_URL"]

    assert url(values("default")) == "http://qdrant:6334"
    assert url({}) == "http://demo-qdrant:6334"  # the bundled chart's service
    assert url(values("external-qdrant")) == "http://qdrant.vector-db.svc:6334"


def test_generator_requests_a_gpu_only_when_enabled():
    (gpu,) = find(render({"qdrant": {"enabled": False}}), "Deployment", "generator")
    spec = gpu["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert c["image"].endswith("-cuda")
    for name in ["no-gpu"]:
        (cpu,) = find(render(values(name)), "Deployment", "generator")
        spec = cpu["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
        assert "nodeSelector" not in spec and "tolerations" not in spec
    for name in VALUES:
        others = [c for kind, p in pods(render(values(name))) if "generator" not in kind for c in p["containers"]]
        assert all("nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}) for c in others)


@pytest.mark.parametrize("name", VALUES)
def test_all_probes_are_grpc_health_probes(name):
    services = [(k, p) for k, p in pods(render(values(name))) if not k.startswith("Job/")]
    assert len(services) == 3
    for kind, pod in services:
        for c in pod["containers"]:
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
                assert set(c[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, f"{kind} {probe}"
            assert c["livenessProbe"]["grpc"]["service"] == "liveness"
            assert c["readinessProbe"]["grpc"]["service"].startswith("memgpt.")


@pytest.mark.parametrize("name", VALUES)
def test_network_policies_let_only_the_gateway_reach_memory_and_generator(name):
    docs = render(values(name))
    for component in ["memory", "generator"]:
        (policy,) = find(docs, "NetworkPolicy", component)
        (rule, *metrics) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        assert all(p["port"] == 9100 for m in metrics for p in m["ports"])
    (gateway,) = find(docs, "NetworkPolicy", "gateway")
    assert gateway["spec"]["ingress"][0]["ports"] == [{"port": 50051, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("name", VALUES)
def test_no_container_runs_as_root(name):
    for kind, pod in pods(render(values(name))):
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, kind
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc.get("runAsUser", sc["runAsUser"]) != 0 and csc["runAsNonRoot"] is True, kind
            assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True, kind


def test_edge_store_is_one_replica_statefulset_with_a_volume():
    docs = render(values("edge-store"))
    (sts,) = find(docs, "StatefulSet", "memory")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert find(docs, "Deployment", "memory") == []
    (dep,) = find(render(values("default")), "Deployment", "memory")
    assert dep["spec"]["replicas"] == 2


def test_batch_job_is_indexed_and_shards_by_completion_index():
    docs = render(values("batch"))
    (job,) = find(docs, "Job", "batch")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 8
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shard=$(JOB_COMPLETION_INDEX)/8" in args and "--retry-failed" in args
    assert find(docs, "PersistentVolumeClaim", "batch")[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert find(render(values("default")), "Job", "batch") == []


def test_service_monitor_is_off_by_default_and_renders_when_on():
    assert not [d for _, d in render(values("default")) if d["kind"] == "ServiceMonitor"]
    on = render({**values("default"), "metrics": {"serviceMonitor": {"enabled": True}}})
    monitors = [d for _, d in on if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 3 and all(m["spec"]["endpoints"][0]["port"] == "metrics" for m in monitors)


def test_bad_values_fail_with_a_clear_message():
    with pytest.raises(Exception, match="memory.store must be"):
        render({**values("default"), "memory": {"store": "sqlite"}})
    with pytest.raises(Exception, match="auth.enabled needs API keys"):
        render({**values("default"), "auth": {"enabled": True, "apiKeys": []}})


def test_breaking_a_template_fails_the_checks(tmp_path):
    broken = tmp_path / "memgpt"
    shutil.copytree(CHART, broken)
    path = broken / "templates" / "gateway.yaml"
    text = path.read_text()
    path.write_text(text.replace("containerPort: 50051", "containerPorts: 50051", 1))
    errors = invalid(render(values("default"), chart=str(broken)))
    assert any("gateway.yaml" in e and "containerPort" in e for e in errors), errors
    path.write_text(text.replace("{{- end }}", "", 1))
    with pytest.raises(Exception):
        render(values("default"), chart=str(broken))


def compose_errors(doc):
    with open(os.path.join(ROOT, ".venv", "share", "compose-spec.json")) as f:
        schema = json.load(f)
    # The schema declares JSON Schema draft 2019-09 (under its old http:// name).
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_validates_against_the_compose_specification():
    with open(os.path.join(ROOT, "deploy", "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    assert compose_errors(doc) == []
    services = doc["services"]
    qdrant = [s for n, s in services.items() if n.startswith("qdrant-")]
    assert len(qdrant) == 3 and all(s["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for s in qdrant)
    env = services["memory"]["environment"]
    assert env["MEMGPT_MEMORY_STORE"] == "qdrant"
    assert (env["MEMGPT_MEMORY_QDRANT_SHARD_NUMBER"], env["MEMGPT_MEMORY_QDRANT_REPLICATION_FACTOR"]) == ("6", "2")
    assert {"generator", "gateway", "otel-collector", "jaeger"} <= set(services)
    assert all(s.get("user") == "10001:10001" for n, s in services.items() if n in ("memory", "generator", "gateway"))
    doc["services"]["gateway"]["bogus"] = True
    assert compose_errors(doc), "an unknown service key must fail validation"


def test_kubernetes_batch_job_example_validates():
    with open(os.path.join(ROOT, "deploy", "k8s", "batch-job.yaml")) as f:
        docs = [("batch-job.yaml", d) for d in yaml.safe_load_all(f) if d]
    assert invalid(docs) == []
    assert docs[0][1]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
