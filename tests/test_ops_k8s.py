"""The Kubernetes manifests: valid against recent Kubernetes schemas (strict, offline), and
consistent with the image and the agent (shard env, probes on the metrics port, secrets)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from bot.agent.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.33.0", kv.latest_version())  # backoffLimitPerIndex is GA from 1.33
BOT_SHUTDOWN_S = 3  # README: every bot leaves and the process exits within 3 s of SIGTERM


def load_all() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


DOCS = load_all()
JOB = DOCS["Job/enx-bot-loadtest"]
DEPLOYMENT = DOCS["Deployment/enx-bot-monitor"]
SECRET = DOCS["Secret/enx-bot-credentials"]
CONFIGMAP = DOCS["ConfigMap/enx-bot-config"]
WORKLOADS = {"job": JOB, "deployment": DEPLOYMENT}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c["env"]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(DOCS))
def test_manifest_is_valid_strict(name: str, version: str) -> None:
    assert kv.validate(DOCS[name], version, strict=True)  # SchemaNotFoundError fails too


def test_strict_validation_does_reject_mistakes() -> None:
    bad = copy.deepcopy(DEPLOYMENT)
    container(bad)["livenesProbe"] = container(bad).pop("livenessProbe")  # a typo
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)
    bad = copy.deepcopy(JOB)
    bad["spec"]["completions"] = "four"  # a wrong type
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_the_job_shards_the_swarm_by_completion_index() -> None:
    spec = JOB["spec"]
    assert spec["completionMode"] == "Indexed"
    env = env_of(container(JOB))
    assert env["ENX_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert int(env["ENX_SHARD_COUNT"]["value"]) == spec["completions"]
    assert JOB["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_workload_probes_resources_secrets_and_mounts(kind: str) -> None:
    workload = WORKLOADS[kind]
    pod = workload["spec"]["template"]["spec"]
    c = container(workload)
    env = env_of(c)
    # probes on the metrics port the agent is told to serve
    port = int(env["ENX_METRICS_PORT"]["value"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == port
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    # SIGTERM, then the bots leave: the grace period must outlast that, with margin
    assert pod["terminationGracePeriodSeconds"] >= 3 * BOT_SHUTDOWN_S
    res = c["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    # credentials only from the Secret, by keys it has
    for name in ("ENX_APP_ID", "ENX_APP_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET["metadata"]["name"] and ref["key"] in SECRET["stringData"]
    assert not any("value" in e and "KEY" in name for name, e in env.items())
    # the config comes from the ConfigMap at /config, read-only, and is a file it has
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/config"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/config"]["name"]]["configMap"]["name"] == CONFIGMAP["metadata"]["name"]
    assert c["args"][0] == "run" and c["args"][1].startswith("/config/")
    assert Path(c["args"][1]).name in CONFIGMAP["data"]
    assert env["ENX_REPORT_DIR"]["value"] in mounts


def test_the_image_user_matches_run_as_user() -> None:
    user = next(
        line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")
    )
    for workload in WORKLOADS.values():
        assert str(workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == user.split(":")[0]


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_the_configmap_configs_load_with_the_pod_env(kind: str) -> None:
    """The agent itself accepts the mounted config with the env the pod gets."""
    c = container(WORKLOADS[kind])
    env = {name: e.get("value", "") for name, e in env_of(c).items()}
    env.update(ENX_APP_ID="app", ENX_APP_KEY="key", ENX_SHARD_INDEX="0")  # from the Secret / downward API
    if kind == "deployment":
        env.pop("ENX_SHARD_INDEX")
    name = Path(c["args"][1]).name
    cfg = parse_config(yaml.safe_load(CONFIGMAP["data"][name]), env, name)
    assert cfg.mode == "credentials" and cfg.bots
    if kind == "job":
        assert len(cfg.bots) >= int(env["ENX_SHARD_COUNT"])  # every pod has bots to run


def test_shard_reports_land_on_one_claim_that_the_merge_job_and_the_reader_mount() -> None:
    claim = DOCS["PersistentVolumeClaim/enx-bot-reports"]["metadata"]["name"]
    merge_job = DOCS["Job/enx-bot-report-merge"]
    reader = DOCS["Pod/enx-bot-reports-reader"]

    def claim_at(pod: dict[str, Any], c: dict[str, Any], path: str) -> str:
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        return str(volumes[mounts[path]]["persistentVolumeClaim"]["claimName"])

    job_pod = JOB["spec"]["template"]["spec"]
    reports = env_of(container(JOB))["ENX_REPORT_DIR"]["value"]
    assert claim_at(job_pod, container(JOB), reports) == claim
    merge_pod = merge_job["spec"]["template"]["spec"]
    (merge_c,) = merge_pod["containers"]
    assert claim_at(merge_pod, merge_c, reports) == claim
    assert merge_c["args"][:3] == ["report", "merge", reports]
    assert merge_job["spec"]["backoffLimit"] == 0  # an incomplete merge (exit 6) is not retried
    (reader_c,) = reader["spec"]["containers"]
    assert claim_at(reader["spec"], reader_c, reports) == claim


def test_the_merge_jobs_command_runs(tmp_path: Path) -> None:
    """The collector's own arguments, with the claim's path swapped for a folder of shards."""
    import json
    import subprocess
    import sys

    from bot.agent.ops import RunRecorder

    (merge_c,) = DOCS["Job/enx-bot-report-merge"]["spec"]["template"]["spec"]["containers"]
    for index in range(2):
        rec = RunRecorder(target=1, meta={"shard_index": index, "shard_count": 2, "config_digest": "d"})
        rec.bot_state(f"b{index}", "joining")
        rec.join_latency(f"b{index}", 0.1 * (index + 1))
        rec.bot_state(f"b{index}", "connected")
        rec.outcome(f"b{index}", "completed")
        rec.write_reports(tmp_path, f"report-{index}")
    args = [a.replace("/reports", str(tmp_path)) for a in merge_c["args"]]
    proc = subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert merged["summary"]["bots"] == 2 and merged["missing_shards"] == []
