"""The container test (docs/deploy.md): builds the repository's Dockerfile on a Debian base made
here (debootstrap --variant=minbase bookworm, imported once as dosod-test/bookworm-minbase, since
public images cannot be pulled) with ARTIFACTS=prebuilt (the binary, ONNX Runtime and the text
encoder built on this machine: scripts/container_context.sh), then runs it as Kubernetes would
(read-only root file system, /tmp a tmpfs, data/ a named volume) and checks that:

1. it detects through the published port what the host binary detects on the same image;
2. it runs as the non-root user 10001, and a named vocabulary PUT is saved in data/ (owned by
   that user) and is still served after the container is stopped and started again;
3. `docker stop` (SIGTERM) ends it with exit code 0 well within its grace period.

Needs a running Docker daemon with BuildKit (scripts/deploy_test_deps.sh starts one); exits 1
when a check fails.

    .venv/bin/python -m dosod_tools.deploy.container [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import REPO_ROOT
from .scaleout import free_port, request, wait_for, write_and_judge

BASE = "dosod-test/bookworm-minbase"
IMAGE = "dosod:container-test"
HELDOUT = REPO_ROOT / "tests" / "fixtures" / "demo-heldout"
GRACE_S = 10


def sh(*cmd: str, env: dict | None = None, check: bool = True, capture: bool = True) -> str:
    r = subprocess.run(cmd, capture_output=capture, text=True, env=env)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return (r.stdout or "").strip()


def docker_build_command() -> tuple[list[str], dict]:
    """`docker build` with BuildKit: the buildx plugin when there is one, else Debian's 20.10
    client, which talks to the daemon's built-in BuildKit with DOCKER_BUILDKIT=1."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "build"], env
    if Path("/usr/bin/docker").exists():
        return ["/usr/bin/docker", "build"], env
    raise SystemExit("docker build needs BuildKit: install docker-buildx, or Debian's docker.io")


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap fetches from the same one)."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, flags=re.M):
            url = m.group(1)
            if "debian" in url and "security" not in url and "debian-" not in url.rsplit("/", 1)[-1]:
                return url
    return "http://deb.debian.org/debian"


def ensure_base() -> str:
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode == 0:
        return "existing"
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap not found: apt-get install debootstrap (scripts/deploy_test_deps.sh)")
    root = Path(tempfile.mkdtemp(prefix="dosod-rootfs-"))
    # The directory becomes the image's `/`: mkdtemp's 0700 would lock the service user out.
    root.chmod(0o755)
    try:
        t0 = time.monotonic()
        sh("debootstrap", "--variant=minbase", "bookworm", str(root), debian_mirror())
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        sh_in = subprocess.run(["docker", "import", "-", BASE], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if sh_in.returncode != 0 or tar.returncode != 0:
            raise SystemExit(f"docker import failed: {sh_in.stderr}")
        return f"made in {time.monotonic() - t0:.0f} s"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def host_detection() -> tuple[str, list[str], list[dict]]:
    """The first held-out image on which the host binary, given the image's own class names,
    finds something: (file, classes, detections)."""
    ann = json.loads((HELDOUT / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    env = dict(os.environ)
    for im in ann["images"]:
        classes = sorted({names[a["category_id"]] for a in ann["annotations"] if a["image_id"] == im["id"]})
        path = HELDOUT / im["file_name"]
        out = sh(str(REPO_ROOT / "target" / "release" / "dosod"), "--model", str(REPO_ROOT / "models" / "demo"),
                 "detect", "--classes", ", ".join(classes), "--score-threshold", "0.05", str(path), env=env)
        dets = json.loads(out.splitlines()[0])["detections"]
        if dets:
            return im["file_name"], classes, dets
    raise SystemExit("the host binary detects nothing on any held-out fixture image")


def same(a: list[dict], b: list[dict]) -> bool:
    """The same detections: labels equal, scores within 1e-3 and boxes within 0.5 px (the
    container and the host may run different thread counts)."""
    if len(a) != len(b):
        return False
    order = lambda d: (d["label"], -d["score"])  # noqa: E731
    return all(
        x["label"] == y["label"] and abs(x["score"] - y["score"]) < 1e-3
        and all(abs(u - v) < 0.5 for u, v in zip(x["box"], y["box"], strict=True))
        for x, y in zip(sorted(a, key=order), sorted(b, key=order), strict=True))


def run(keep: bool) -> dict:
    checks: dict[str, bool] = {}
    facts: dict = {"base_image": ensure_base()}
    sh("bash", str(REPO_ROOT / "scripts" / "container_context.sh"))
    build, env = docker_build_command()
    t0 = time.monotonic()
    sh(*build, "--build-arg", "ARTIFACTS=prebuilt", "--build-arg", f"RUNTIME_IMAGE={BASE}",
       # Camera decoding (ffmpeg) is not exercised here: the image is built without it.
       "--build-arg", "RUNTIME_PACKAGES=", "-t", IMAGE, str(REPO_ROOT), env=env)
    facts["build_s"] = round(time.monotonic() - t0, 1)
    facts["image_mb"] = round(int(sh("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE)) / 1e6)
    port, name, volume = free_port(), f"dosod-test-{os.getpid()}", f"dosod-test-data-{os.getpid()}"
    sh("docker", "rm", "-f", name, check=False)
    try:
        sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "--read-only",
           "--tmpfs", "/tmp", "-v", f"{volume}:/srv/dosod/data", IMAGE,
           "serve", "--host", "0.0.0.0", "--shutdown-grace-ms", str(GRACE_S * 1000))

        def ready() -> bool:
            if sh("docker", "inspect", "-f", "{{.State.Running}}", name) != "true":
                raise SystemExit(f"the container stopped:\n{sh('docker', 'logs', name, check=False)}")
            return request(port, "GET", "/health/ready")[0] == 200
        wait_for("the container is ready", ready, 120, 0.2)

        file, classes, expected = host_detection()
        q = "classes=" + ",".join(c.replace(" ", "%20") for c in classes) + "&score_threshold=0.05"
        status, body = request(port, "POST", f"/v1/detect?{q}", (HELDOUT / file).read_bytes(),
                               {"Content-Type": "image/jpeg"}, timeout=60)
        got = json.loads(body).get("detections", []) if status == 200 else []
        facts["detect"] = {"image": file, "classes": classes, "status": status,
                           "container": len(got), "host": len(expected)}
        checks["detects through the container what the host binary detects"] = status == 200 and same(got, expected)

        uid = sh("docker", "exec", name, "id", "-u")
        status, body = request(port, "PUT", "/v1/vocabularies/loading-dock",
                               json.dumps({"classes": ["forklift", "pallet"]}).encode(),
                               {"Content-Type": "application/json"})
        owner = sh("docker", "exec", name, "stat", "-c", "%u", "/srv/dosod/data/vocabularies/loading-dock.json",
                   check=False)
        facts["user"] = {"uid": uid, "put_status": status, "file_owner": owner}
        checks["runs as the non-root user and saves a named vocabulary in data/"] = (
            uid == "10001" and status == 200 and owner == "10001")

        t0 = time.monotonic()
        sh("docker", "stop", "-t", str(GRACE_S + 20), name)
        stop_s = time.monotonic() - t0
        code = sh("docker", "inspect", "-f", "{{.State.ExitCode}}", name)
        facts["stop"] = {"seconds": round(stop_s, 2), "exit_code": code, "grace_s": GRACE_S}
        checks["SIGTERM ends it with exit code 0 within the grace period"] = code == "0" and stop_s < GRACE_S

        sh("docker", "start", name)
        wait_for("the container is ready again", ready, 120, 0.2)
        again = request(port, "GET", "/v1/vocabularies/loading-dock")[0]
        facts["vocabulary_after_restart"] = again
        checks["the vocabulary survives a restart on its volume"] = again == 200
    finally:
        if not keep:
            sh("docker", "rm", "-f", name, check=False)
            sh("docker", "volume", "rm", "-f", volume, check=False)
    return {"facts": facts, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="keep the container and its volume")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("no Docker daemon: scripts/deploy_test_deps.sh starts one (as root)")
    r = run(args.keep)
    f = r["facts"]
    print(f"container: base image {f['base_image']}, built in {f['build_s']} s ({f['image_mb']} MB); "
          f"detect on {f['detect']['image']}: {f['detect']['container']} detections "
          f"(host binary {f['detect']['host']}); uid {f['user']['uid']}, vocabulary PUT {f['user']['put_status']} "
          f"saved by uid {f['user']['file_owner']}; docker stop: exit {f['stop']['exit_code']} after "
          f"{f['stop']['seconds']} s (grace {GRACE_S} s); vocabulary after restart {f['vocabulary_after_restart']}")
    for check, ok in r["checks"].items():
        print(f"  [{'ok' if ok else 'FAILED'}] {check}")
    return write_and_judge(r, r["checks"], args.json)


if __name__ == "__main__":
    sys.exit(main())
