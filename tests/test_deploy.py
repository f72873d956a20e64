"""deploy/ as shipped: Kubernetes manifests, the systemd unit, the image, rules and dashboard.

Both Kubernetes layouts are checked: deploy/kubernetes (one replica on SQLite, a StatefulSet) and
deploy/kubernetes-postgres (several replicas on PostgreSQL, a Deployment).

Tools that may be missing here skip with the reason: promtool (Debian's `prometheus` package,
which .ci/run installs), systemd-analyze and kubectl (for `kubectl kustomize`, offline). The
cluster metrics are checked on a daemon on the PostgreSQL test server, which skips only when no
server can be reached (see tests/test_store.py). Everything else runs offline on every machine.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor import __version__
from monitor.app import SHUTDOWN_SECONDS
from monitor.config import load_config, parse_config
from monitor.config.models import parse_listen
from tests.conftest import API_KEY, make_config
from tests.test_store import PG_DSN, pg_schema  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_PG = DEPLOY / "kubernetes-postgres"
LAYOUTS = [K8S, K8S_PG]
#: The one workload of each layout.
WORKLOAD = {K8S: "StatefulSet", K8S_PG: "Deployment"}
RULES = DEPLOY / "prometheus" / "rules.yaml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yaml"
DASHBOARD = DEPLOY / "grafana" / "availability-monitor.json"
UNIT = DEPLOY / "systemd" / "availability-monitor.service"
OPERATIONS = ROOT / "docs" / "operations.md"

PROMTOOL = shutil.which("promtool")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
KUBECTL = shutil.which("kubectl")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package `prometheus`; .ci/run installs it)",
)
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (package `systemd`)"
)
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
layouts = pytest.mark.parametrize("layout", LAYOUTS, ids=[p.name for p in LAYOUTS])

#: Kinds from the Prometheus Operator's CRDs: kubernetes-validate has no schemas for them, so
#: test_crd_manifests checks them against the parts of the CRD schema these manifests use.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
METRIC_RE = re.compile(r"\bavailability_monitor_[a-z0-9_]+")
JOB = "availability-monitor"
#: What the Downward API gives a pod of the Deployment as POD_NAME.
POD_NAME = "availability-monitor-5d8c7b9f4-x7k2p"


# -- helpers ------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.cache
def manifests(layout: Path = K8S) -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every Kubernetes object of a layout (read once)."""
    out = []
    for path in sorted(layout.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((path.name, doc))
    return out


def manifest(kind: str, name: str | None = None, layout: Path = K8S) -> dict[str, Any]:
    found = [
        d
        for _, d in manifests(layout)
        if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    assert len(found) == 1, f"{layout.name}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workload(layout: Path = K8S) -> dict[str, Any]:
    """The layout's StatefulSet or Deployment."""
    return manifest(WORKLOAD[layout], layout=layout)


def container(layout: Path = K8S) -> dict[str, Any]:
    (c,) = workload(layout)["spec"]["template"]["spec"]["containers"]
    return c


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"]]


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: panel targets and template variables."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = [
        t["expr"]
        for p in dash["panels"]
        for t in p.get("targets", [])
        if "expr" in t  # row panels have no targets
    ]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_anchors() -> set[str]:
    return {
        github_anchor(m[1])
        for m in re.finditer(r"^#{1,6} (.+)$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    }


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file; repeated keys keep every value, in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


# -- Kubernetes ---------------------------------------------------------------------------------


@layouts
def test_kustomization_lists_every_manifest_and_nothing_else(layout):
    kustomization = load_yaml(layout / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for name in listed:
        assert (layout / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    on_disk = {p.name for p in layout.glob("*.yaml")} | {p.name for p in layout.glob("*.yml")}
    examples = {n for n in on_disk if n.endswith(".example.yaml")}
    # Placeholders must never be applied over a real Secret by `kubectl apply -k`.
    assert not examples & set(listed), "example manifests must not be listed"
    assert set(listed) == on_disk - {"kustomization.yaml"} - examples


@needs_kubectl
@layouts
def test_kustomize_builds_the_listed_manifests(layout):
    """`kubectl kustomize` (offline) renders exactly the listed objects, image and labels set."""
    result = run(KUBECTL, "kustomize", layout)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    listed = load_yaml(layout / "kustomization.yaml")["resources"]
    expected = [d for f, d in manifests(layout) if f in listed]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in expected
    )
    assert "Secret" not in {d["kind"] for d in built}
    for doc in built:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "availability-monitor"
    (image,) = load_yaml(layout / "kustomization.yaml")["images"]
    (work,) = [d for d in built if d["kind"] == WORKLOAD[layout]]
    (c,) = work["spec"]["template"]["spec"]["containers"]
    assert c["image"] == f"{image['newName']}:{image['newTag']}"


@pytest.mark.parametrize(
    ("file", "doc"),
    [
        pytest.param(f, d, id=f"{layout.name}/{f}:{d['kind']}")
        for layout in LAYOUTS
        for f, d in manifests(layout)
        if d["kind"] not in CRD_KINDS
    ],
)
def test_manifest_validates_against_the_kubernetes_schema(file, doc):
    # strict: unknown fields (a typo such as `readinesProbe`) are errors too
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except jsonschema.ValidationError as exc:  # kubernetes_validate raises a subclass
        where = ".".join(str(p) for p in exc.path)
        problem = f"{file}: {doc['kind']} {where}: {exc.message}"
    else:
        return
    pytest.fail(problem, pytrace=False)  # outside `except`: no page of schema in the report


@layouts
def test_every_kind_is_covered(layout):
    kinds = {d["kind"] for _, d in manifests(layout)}
    assert kinds >= CRD_KINDS
    assert {WORKLOAD[layout], "Service", "ConfigMap", "Secret"} <= kinds
    if layout == K8S_PG:
        assert "PodDisruptionBudget" in kinds


def _k8s_definitions() -> referencing.Resource[Any]:
    version = kubernetes_validate.latest_version()
    ref = resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json"
    )
    return referencing.Resource.from_contents(json.loads(ref.read_text(encoding="utf-8")))


def _meta(ref: str) -> dict[str, str]:
    return {"$ref": f"/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.{ref}"}


# The parts of the Prometheus Operator's CRD schemas (monitoring.coreos.com/v1) these manifests
# use, closed with additionalProperties: false so a misspelt or misplaced field fails.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": {"type": "string"},
            "selector": _meta("LabelSelector"),
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "honorLabels": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": _DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "additionalProperties": False,
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": ["string", "integer"]},
                                    "for": _DURATION,
                                    "labels": _STR_MAP,
                                    "annotations": _STR_MAP,
                                },
                            },
                        },
                    },
                },
            }
        },
    },
}


@layouts
@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_crd_manifests(kind, layout):
    """Operator CRDs: apiVersion, Kubernetes ObjectMeta, and the spec fields used."""
    doc = manifest(kind, layout=layout)
    schema = {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _meta("ObjectMeta"),
            "spec": CRD_SCHEMAS[kind],
        },
    }
    registry = referencing.Registry().with_resource("/api/_definitions.json", _k8s_definitions())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


@layouts
def test_prometheusrule_holds_the_same_rules_as_the_rules_file(layout):
    rule = manifest("PrometheusRule", layout=layout)
    assert rule["spec"] == load_yaml(RULES), (
        f"deploy/{layout.name}/prometheusrule.yaml differs from deploy/prometheus/rules.yaml: "
        "copy the groups of rules.yaml under `spec:` of the PrometheusRule"
    )


@layouts
def test_services_and_servicemonitor_fit_together(layout):
    pod_labels = workload(layout)["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container(layout)["ports"]}
    services = {d["metadata"]["name"]: d for _, d in manifests(layout) if d["kind"] == "Service"}
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names

    monitor = manifest("ServiceMonitor", layout=layout)["spec"]
    chosen = [
        s
        for s in services.values()
        if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(chosen) == 1, "the ServiceMonitor must select exactly one Service"
    metrics = chosen[0]
    # A not-ready pod (key refused, state loading) must stay scraped: see service-metrics.yaml.
    assert metrics["spec"]["publishNotReadyAddresses"] is True
    assert metrics["spec"]["clusterIP"] == "None"
    if WORKLOAD[layout] == "StatefulSet":
        assert workload(layout)["spec"]["serviceName"] == metrics["metadata"]["name"]
    svc_ports = {p["name"] for p in metrics["spec"]["ports"]}
    for endpoint in monitor["endpoints"]:
        assert endpoint["port"] in svc_ports and endpoint["path"] == "/metrics"
    # The job label comes from this Service label; the Down rule matches job="availability-monitor".
    assert metrics["metadata"]["labels"][monitor["jobLabel"]] == JOB
    assert f'up{{job="{JOB}"}}' in rules()[0]["expr"]


def assert_hardened_pod(layout: Path) -> None:
    """Checks every workload shares: security, resources, probes, graceful stop, the image."""
    pod, c = workload(layout)["spec"]["template"]["spec"], container(layout)
    assert pod["terminationGracePeriodSeconds"] > max(10, SHUTDOWN_SECONDS)
    assert pod["automountServiceAccountToken"] is False

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()

    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"] for p in c["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ports

    name, tag = c["image"].rsplit(":", 1)
    assert tag == __version__
    images = load_yaml(layout / "kustomization.yaml")["images"]
    assert {"name": name, "newName": name, "newTag": __version__} in images


def test_statefulset_runs_one_hardened_replica_with_its_state_volume():
    sts = manifest("StatefulSet")
    spec = sts["spec"]
    c = container()
    assert spec["replicas"] == 1
    assert "SQLite cannot be shared by replicas" in (K8S / "statefulset.yaml").read_text()
    assert_hardened_pod(K8S)

    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert claim["metadata"]["name"] in mounts


def test_deployment_runs_hardened_replicas_without_a_state_volume():
    deploy = workload(K8S_PG)
    spec, pod, c = deploy["spec"], deploy["spec"]["template"]["spec"], container(K8S_PG)
    assert spec["replicas"] == 3
    assert_hardened_pod(K8S_PG)
    assert pod["terminationGracePeriodSeconds"] == 30

    # the same security settings and resources as the StatefulSet's pod
    sts_pod, sts_c = workload(K8S)["spec"]["template"]["spec"], container(K8S)
    assert pod["securityContext"] == sts_pod["securityContext"]
    assert c["securityContext"] == sts_c["securityContext"]
    assert c["resources"] == sts_c["resources"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe] == sts_c[probe], probe

    # no state on the pod: only the config, the secrets and a small /tmp
    assert "volumeClaimTemplates" not in spec
    kinds = {v["name"]: (v.keys() - {"name"}).pop() for v in pod["volumes"]}
    assert sorted(kinds.values()) == ["configMap", "emptyDir", "secret"]
    (tmp,) = [v for v in pod["volumes"] if "emptyDir" in v]
    assert "medium" not in tmp["emptyDir"] and tmp["emptyDir"]["sizeLimit"]
    assert {m["name"] for m in c["volumeMounts"]} == set(kinds)

    # cluster.replica_id is ${POD_NAME}: the pod's name, from the Downward API
    (env,) = [e for e in c["env"] if e["name"] == "POD_NAME"]
    assert env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    # A rollout runs replicas + maxSurge pods at once; each must be able to hold a budget slot,
    # or the extra one stands by, sends no request and never reports ready (the rollout stalls).
    rolling = spec["strategy"]["rollingUpdate"]
    assert spec["strategy"]["type"] == "RollingUpdate" and rolling["maxUnavailable"] == 0
    config = yaml.safe_load(manifest("ConfigMap", layout=K8S_PG)["data"]["config.yaml"])
    assert spec["replicas"] + rolling["maxSurge"] <= config["upstream"]["rate_limit"]["requests"]

    # spread over nodes, without refusing to schedule on a small cluster
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    spread = {t["topologyKey"]: t for t in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in spread
    for t in spread.values():
        assert t["whenUnsatisfiable"] == "ScheduleAnyway"
        assert t["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_poddisruptionbudget_lets_one_replica_go_at_a_time():
    pdb = manifest("PodDisruptionBudget", layout=K8S_PG)["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    # it selects exactly the Deployment's pods
    assert pdb["selector"] == workload(K8S_PG)["spec"]["selector"]
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def pod_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as a pod would see it (Downward API fields filled in)."""
    fields = {"metadata.name": POD_NAME}
    return {
        e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in c.get("env", [])
    }


@layouts
def test_configmap_config_is_valid_and_fits_the_workload(layout, tmp_path):
    """The shipped config loads (secret files from the example Secret) and fits the pod."""
    c = container(layout)
    pod = workload(layout)["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    cm = manifest("ConfigMap", layout=layout)
    secret = manifest("Secret", layout=layout)
    (config_vol,) = [n for n in mounts if "configMap" in volumes.get(n, {})]
    (secret_vol,) = [n for n in mounts if "secret" in volumes.get(n, {})]
    assert volumes[config_vol]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes[secret_vol]["secret"]["secretName"] == secret["metadata"]["name"]
    config_mount, secret_mount = mounts[config_vol], mounts[secret_vol]

    # the example Secret: placeholders only
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE_"), f"secret.example.yaml {key} is not a placeholder"

    # Lay out the ConfigMap and Secret as the pod sees them, under tmp_path (a mount may sit
    # inside another, as the Secret inside the config directory of kubernetes-postgres), and
    # point the config's paths there: each path is rewritten once, by its longest mount.
    root = tmp_path / "root"
    for mount, data in ((config_mount, cm["data"]), (secret_mount, secret["stringData"])):
        folder = root / mount.lstrip("/")
        folder.mkdir(parents=True)
        for key, value in data.items():
            (folder / key).write_text(value)
    longest_first = sorted((config_mount, secret_mount), key=len, reverse=True)
    pattern = re.compile("(?<![\\w/])(" + "|".join(map(re.escape, longest_first)) + ")/")
    text = pattern.sub(lambda m: f"{root}{m[1]}/", cm["data"]["config.yaml"])
    assert not pattern.search(text)  # every path now starts with root (a word character before)
    env = pod_env(c)
    config = parse_config(text, env=env)

    assert config.upstream.api_key.reveal() == secret["stringData"]["tm_api_key"]
    assert config.server.admin_token is not None
    assert config.server.admin_token.reveal() == secret["stringData"]["admin_token"]
    assert config.server.listen == "0.0.0.0:9108"
    assert parse_listen(config.server.listen)[1] == c["ports"][0]["containerPort"]
    args = c["args"]
    assert args[:1] == ["run"]
    assert args[args.index("--config") + 1] == f"{config_mount}/config.yaml"

    if layout == K8S:
        assert config.state.backend == "sqlite"
        state_dir = mounts[workload(K8S)["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]]
        assert Path(config.state.path).parent == Path(state_dir)
        return

    assert config.state.backend == "postgres"
    assert config.state.dsn is not None
    assert config.state.dsn.reveal() == secret["stringData"]["pg_dsn"]
    assert "dsn_file: /etc/availability-monitor/secrets/pg_dsn" in cm["data"]["config.yaml"]
    assert secret_mount == "/etc/availability-monitor/secrets"
    # every replica its own ID: the pod's name
    assert "replica_id: ${POD_NAME}" in cm["data"]["config.yaml"]
    assert config.cluster.replica_id == env["POD_NAME"]
    assert config.cluster.lease_seconds * 2 <= pod["terminationGracePeriodSeconds"]


# -- systemd ------------------------------------------------------------------------------------


def test_systemd_unit_is_notify_hardened_and_uses_credentials():
    s = unit_settings(UNIT.read_text(encoding="utf-8"))
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert float(one["WatchdogSec"]) > 0
    assert one["DynamicUser"] == "yes" or "User" in one
    assert one["StateDirectory"] == "availability-monitor"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "SystemCallFilter": "@system-service",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }.items():
        assert value in s.get(key, []), f"{key}={value} missing"
    families = set(one["RestrictAddressFamilies"].split())
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6"} and "AF_UNIX" in families
    assert float(one["TimeoutStopSec"]) > max(10, SHUTDOWN_SECONDS)
    assert one["ExecStart"].split()[1:] == [
        "run",
        "--config",
        "/etc/availability-monitor/config.yaml",
    ]
    assert "Environment" not in s, "secrets come by LoadCredential=, not Environment="
    from monitor.server.listener import ServerLimits, connection_cap

    files = int(one["LimitNOFILE"])
    assert connection_cap(ServerLimits(), files) == ServerLimits().max_connections <= files // 4


def test_systemd_config_is_valid_with_the_units_credentials(tmp_path):
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    creds = tmp_path / "credentials"
    creds.mkdir()
    for spec in unit["LoadCredential"]:
        name, _ = spec.split(":", 1)
        (creds / name).write_text(f"value-of-{name}\n")
    config = load_config(
        DEPLOY / "systemd" / "config.yaml", env={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert config.upstream.api_key.reveal() == "value-of-tm_api_key"
    assert config.state.path.startswith("/var/lib/availability-monitor/")


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify insists that ExecStart's program exists: the unit names the install path
    # (/opt/availability-monitor/bin/availability-monitor), so check a copy that points at this
    # environment's console script instead, with every other line unchanged.
    text = UNIT.read_text(encoding="utf-8")
    (shipped,) = unit_settings(text)["ExecStart"]
    program = shipped.split()[0]
    script = Path(sys.executable).with_name("availability-monitor")
    here = str(script) if script.exists() else f"{sys.executable} -m monitor"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={here} "))
    assert copy.read_text() != text
    result = run(SYSTEMD_ANALYZE, "verify", copy)
    # Warnings (unknown keys, bad values) do not change the exit code: read the output too.
    # Lines about other units on this machine are not ours to judge.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT.name in line or str(tmp_path) in line
    ]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


# -- Docker -------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_wheel_only_and_unprivileged():
    text = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "pip wheel" in text and "--no-index" in text
    user = next(ln for ln in lines if ln.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    assert (
        str(manifest("StatefulSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"])
        == uid
    )
    assert 'VOLUME ["/var/lib/availability-monitor"]' in text


def test_docker_readme_names_the_tag_and_its_config_is_valid():
    text = (DEPLOY / "docker" / "README.md").read_text(encoding="utf-8")
    tag = f"availability-monitor:{__version__}"
    assert f"docker build -f deploy/docker/Dockerfile -t {tag} ." in text
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "upstream:" in b]
    assert blocks
    for block in blocks:
        config = parse_config(block, env={"TM_API_KEY": "k"})
        assert config.server.listen.startswith("0.0.0.0:")
        assert config.state.path.startswith("/var/lib/availability-monitor/")


# -- Prometheus rules ---------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules():
    result = run(PROMTOOL, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules():
    result = run(PROMTOOL, "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_annotations_a_runbook_and_both_kinds_of_test():
    anchors = doc_anchors()
    tests = load_yaml(RULES_TEST)["tests"]
    evals = [e for t in tests for e in t.get("alert_rule_test", [])]
    for rule in rules():
        name = rule["alert"]
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        url = ann["runbook_url"]
        assert url.startswith("docs/operations.md#"), name
        anchor = url.split("#", 1)[1]
        assert anchor in anchors, f"{name}: no section #{anchor} in docs/operations.md"
        assert anchor == github_anchor(name)
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        mine = [e for e in evals if e["alertname"] == name]
        assert any(e["exp_alerts"] for e in mine), f"{name}: no test where it fires"
        assert any(not e["exp_alerts"] for e in mine), f"{name}: no test where it does not fire"


def test_operations_guide_links_resolve():
    text = OPERATIONS.read_text(encoding="utf-8")
    broken = set(re.findall(r"\]\(#([^)]+)\)", text)) - doc_anchors()
    assert not broken, f"docs/operations.md links to missing sections: {sorted(broken)}"
    for target in re.findall(r"\]\((\.\./[^)#]+)\)", text):
        assert (OPERATIONS.parent / target).exists(), target


# -- Grafana ------------------------------------------------------------------------------------


def test_dashboard_is_importable_with_a_datasource_variable():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["title"] and dash["uid"] and dash["id"] is None
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys()
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"] and t["refId"], p["title"]
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"

    queries = "\n".join(dashboard_queries())
    for needed in (
        "availability_monitor_events_by_status",
        "availability_monitor_transitions_total",
        "availability_monitor_upstream_requests_total",
        "histogram_quantile(0.99, sum by (le) (rate(availability_monitor_upstream_request_duration_seconds_bucket",
        "availability_monitor_events_in_maintenance",
        "availability_monitor_last_successful_poll_timestamp_seconds",
        "availability_monitor_webhook_deliveries_total",
        "availability_monitor_webhook_delivery_latency_seconds_bucket",
        "availability_monitor_webhook_pending",
        "availability_monitor_webhook_dead_letters",
    ):
        assert needed in queries, needed


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""

    def fill(expr: str) -> str:
        expr = re.sub(r"^label_values\((.*), *\w+\)$", r"\1", expr)  # a variable's query
        expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
        return re.sub(r"\$\{?\w+\}?", ".*", expr)

    group = {
        "name": "dashboard",
        "rules": [
            {"record": f"dashboard:query_{i}", "expr": fill(q)}
            for i, q in enumerate(dashboard_queries())
        ],
    }
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = run(PROMTOOL, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- against the live daemon --------------------------------------------------------------------

A, B = "DEPLOYAAAAAAAAA1", "DEPLOYBBBBBBBBB2"
LIVE_BODY = textwrap.dedent(
    f"""\
    watch_sets:
      - name: main
        events: [{A}, {{id: {B}, time_zone: Europe/Paris}}]
    """
)


@pytest.fixture
async def live_metrics(sim, tmp_path, start_daemon) -> str:
    """The /metrics text of a real daemon after two polls and a transition."""
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", LIVE_BODY))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    async with aiohttp.ClientSession() as s, s.get(d.url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


CLUSTER_SHARDS, CLUSTER_REQUESTS = 8, 5


@pytest.fixture
async def live_cluster_metrics(sim, pg_schema, start_daemon) -> str:  # noqa: F811
    """The /metrics text of a real replica on PostgreSQL (a fresh schema) after two polls.

    pg_schema comes before start_daemon, so the daemon is stopped before its schema is dropped.
    """
    head = {
        "upstream": {
            "base_url": sim.url,
            "api_key": API_KEY,
            "rate_limit": {"requests": CLUSTER_REQUESTS, "per_seconds": 1, "margin": 0.05},
            "timeout_seconds": 2,
        },
        "state": {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema},
        # as in deploy/kubernetes-postgres: the replica's ID from the pod's name
        "cluster": {"shards": CLUSTER_SHARDS, "replica_id": "${POD_NAME}"},
        "server": {"listen": "127.0.0.1:0"},
    }
    config = parse_config(yaml.safe_dump(head) + LIVE_BODY, env={"POD_NAME": POD_NAME})
    d = await start_daemon(config)
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + "/readyz") as r:
            # a replica holding shards and budget slots, which polled: ready
            assert r.status == 200, await r.text()
        async with s.get(d.url + "/metrics") as r:
            assert r.status == 200
            return await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, for every sample of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL query can use, from the # TYPE lines and the samples.

    prometheus_client writes counters as `x_total` and histograms as `x` with samples
    `x_bucket`, `x_sum` and `x_count`; families with no sample yet still have # TYPE lines.
    """
    names: set[str] = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m[1], m[2]
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        elif kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")  # OpenMetrics style: the family name has no suffix
        else:
            names.add(name)
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    return names


def used_names() -> dict[str, set[str]]:
    """Metric names in the rules, their unit tests and the dashboard, by where they appear."""
    test_text = [
        s["series"] for t in load_yaml(RULES_TEST)["tests"] for s in t.get("input_series", [])
    ] + [e["expr"] for t in load_yaml(RULES_TEST)["tests"] for e in t.get("promql_expr_test", [])]
    sources = {
        "rules.yaml": [r["expr"] for r in rules()],
        "rules_test.yaml": test_text,
        "dashboard": dashboard_queries(),
    }
    return {where: set(METRIC_RE.findall("\n".join(texts))) for where, texts in sources.items()}


async def test_every_metric_used_in_rules_and_dashboard_is_exposed(live_metrics):
    exposed = exposed_names(live_metrics)
    assert "availability_monitor_upstream_request_duration_seconds_bucket" in exposed
    assert "availability_monitor_upstream_requests_total" in exposed
    used = used_names()
    assert all(used.values()), used
    for where, names in used.items():
        missing = sorted(names - exposed)
        assert not missing, f"{where} uses metrics the daemon does not expose: {missing}"


def cluster_names_used() -> set[str]:
    return {n for names in used_names().values() for n in names if "_cluster_" in n}


async def test_cluster_metrics_of_the_rules_are_set_by_a_replica_on_postgresql(
    live_cluster_metrics,
):
    """The cluster rules' metrics, live from a replica on PostgreSQL, with the values the rules
    take for a healthy fleet (here: one replica, holding every shard and budget slot)."""
    used = cluster_names_used()
    assert {
        "availability_monitor_cluster_leases_lost_total",
        "availability_monitor_cluster_lease_renewals_total",
        "availability_monitor_cluster_shards_owned",
        "availability_monitor_cluster_replicas_live",
        "availability_monitor_cluster_fenced_writes_total",
    } <= used
    missing = sorted(used - exposed_names(live_cluster_metrics))
    assert not missing, f"the rules use cluster metrics a replica does not expose: {missing}"

    got = samples(live_cluster_metrics)
    p = "availability_monitor_cluster_"
    assert got[(p + "shards_owned", ())] == CLUSTER_SHARDS
    assert got[(p + "budget_slots_owned", ())] == CLUSTER_REQUESTS
    assert got[(p + "replicas_live", ())] == 1
    assert got[(p + "lease_renewals_total", (("outcome", "ok"),))] >= 1
    assert got[(p + "lease_renewals_total", (("outcome", "error"),))] == 0  # there from the start
    assert got[(p + "leases_lost_total", ())] == 0
    assert got[(p + "fenced_writes_total", ())] == 0
    # it polled and stored the transition through the fenced write path
    transitions = [v for (n, _), v in got.items() if n == "availability_monitor_transitions_total"]
    assert sorted(transitions)[-2:] == [0, 1] and sum(transitions) == 1  # the others start at 0


async def test_a_sqlite_daemon_exports_the_cluster_gauges_at_zero(live_metrics):
    """Why AvailabilityMonitorClusterNoShardsOwned also asks for replicas_live > 0: on SQLite
    the shard gauge is 0 for good, and only replicas_live tells the two modes apart."""
    got = samples(live_metrics)
    p = "availability_monitor_cluster_"
    assert got[(p + "shards_owned", ())] == 0
    assert got[(p + "replicas_live", ())] == 0
    (rule,) = [r for r in rules() if r["alert"] == "AvailabilityMonitorClusterNoShardsOwned"]
    assert "availability_monitor_cluster_replicas_live) > 0" in rule["expr"]


@needs_promtool
@pytest.mark.parametrize("fixture", ["live_metrics", "live_cluster_metrics"])
def test_promtool_check_metrics_accepts_the_live_metrics(fixture, request):
    # not async: pytest-asyncio sets the async fixture up on its own loop
    text = request.getfixturevalue(fixture)
    result = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
