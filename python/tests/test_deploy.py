"""deploy/: the Kubernetes manifests validate (kubernetes-validate, strict, against the oldest
version they need and the newest the tool knows), checkov finds nothing or each skip says why,
and the configuration the ConfigMap ships is read by the real binary."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
TOOLS = ROOT / ".venv-deploy" / "bin"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} missing: run `make deploy-venv`"
    return str(path)


def documents() -> list[dict]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


# 1.28: the first release that labels StatefulSet pods with apps.kubernetes.io/pod-index
# (cameras.yaml shards by it).
@pytest.mark.parametrize("version", ["1.28.0", None])
def test_manifests_validate(version: str | None) -> None:
    cmd = [tool("kubernetes-validate"), "--strict", "--quiet"]
    if version:
        cmd += ["-k", version]
    r = subprocess.run(cmd + [str(p) for p in MANIFESTS], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_checkov_is_clean_or_justified() -> None:
    r = subprocess.run(
        [tool("checkov"), "-d", str(K8S), "--framework", "kubernetes", "--skip-download",
         "--output", "json", "--quiet"],
        capture_output=True, text=True,
    )
    report = json.loads(r.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results.get("failed_checks", [])]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 200
    # Every skip is a `checkov.io/skipN: ID=reason` annotation with a real reason.
    for doc in documents():
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, why = value.partition("=")
                assert check.startswith("CKV") and len(why) > 40, f"{doc['metadata']['name']}: {value}"


def test_pods_are_hardened_and_probed() -> None:
    for doc in documents():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert "readinessProbe" in c and "livenessProbe" in c
            if c["name"] == "dosod":
                assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
                assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
                assert "startupProbe" in c
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert {"/tmp", "/srv/dosod/data", "/etc/dosod"} <= mounts


def config_map() -> dict[str, str]:
    (cm,) = [d for d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dosod-config"]
    return cm["data"]


def test_termination_outlasts_the_shutdown() -> None:
    import tomllib

    for doc in documents():
        if doc["kind"] in ("Deployment", "StatefulSet") and doc["metadata"]["name"].startswith("dosod-") \
                and doc["metadata"]["name"] != "dosod-redis":
            env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
            server = tomllib.loads(config_map()[Path(env["DOSOD_CONFIG"]).name])["server"]
            need_s = (server["shutdown_delay_ms"] + server["shutdown_grace_ms"]) / 1000
            assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > need_s


@pytest.mark.parametrize(("name", "shard"), [("dosod.toml", ""), ("cameras.toml", "1/3")])
def test_the_binary_reads_the_shipped_configuration(tmp_path: Path, name: str, shard: str) -> None:
    """`dosod vocab list` on each file of the ConfigMap: the real parser (unknown keys are
    errors), the Redis store it names (unreachable here: tolerated, as configured), the shard."""
    binary = ROOT / "target" / "release" / "dosod"
    assert binary.exists() and os.environ.get("DOSOD_ORT_LIB"), "run through `make test`"
    path = tmp_path / name
    path.write_text(config_map()[name])
    env = dict(os.environ, DOSOD_STREAM_SHARD=shard, DOSOD_LOG="warn")
    # Nothing listens on port 1: the file's redis URL is swapped so no real Redis is touched.
    env["DOSOD_VOCAB_STORE"] = "redis://127.0.0.1:1/0"
    r = subprocess.run([str(binary), "--config", str(path), "vocab", "list"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "coco" in r.stdout
    assert "redis://127.0.0.1:1/0" in r.stderr, "the store's unavailability is reported"
