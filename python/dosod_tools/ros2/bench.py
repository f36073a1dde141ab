"""Latency of the ROS 2 node (`dosod ros`) on the demo model, fed by the Cyclone DDS test peer.

For each frame size it starts the node on a private DDS domain, lets the peer (dosod_tools.ros2.peer) play a
camera (`rgb8` frames stamped with the wall clock), stops the node and reads its final summary.
Printed per size:
  - node: image receipt -> Detection2DArray published (the node's own figure);
  - age: the frame's header stamp -> published, which adds the peer's serialisation and the
    DDS transport (the Python peer needs tens to hundreds of ms to serialise a large frame);
  - round trip: the peer's write -> the peer reading the detections.

Run after `make build`: .venv/bin/python -m dosod_tools.ros2.bench [--sizes 640x360 1280x720]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from .. import REPO_ROOT


def run_size(size: str, args: argparse.Namespace, domain: int) -> dict:
    w, h = size.split("x")
    env = {**os.environ, "DOSOD_LOG_FORMAT": "json", "DOSOD_LOG": "warn,dosod=info"}
    node = subprocess.Popen(
        [str(REPO_ROOT / "target/release/dosod"), "--model", args.model, "ros", "--domain-id", str(domain)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = node.stdout.readline()
        if "ready" not in ready:
            raise SystemExit(f"dosod ros did not start: {ready}{node.stderr.read()}")
        peer = subprocess.run(
            [sys.executable, "-m", "dosod_tools.ros2.peer", "--domain", str(domain), "stream",
             "--image", args.image, "--resize", w, h, "--hz", str(args.hz), "--seconds", str(args.seconds)],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        report = json.loads(peer.stdout.splitlines()[-1])
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=30)
    summary = None
    for line in err.splitlines():
        try:
            fields = json.loads(line)["fields"]
        except (ValueError, KeyError):
            continue
        if fields.get("message") == "ros2 summary" and fields.get("which") == "final":
            summary = fields
    if summary is None:
        raise SystemExit(f"no final summary from the node:\n{err}")
    return {"peer": report, "node": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/demo")
    p.add_argument("--image", default="tests/fixtures/ros2/scene.jpg")
    p.add_argument("--sizes", nargs="+", default=["640x360", "1280x720", "1920x1080"])
    p.add_argument("--hz", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--domain", type=int, default=200 + os.getpid() % 30)
    args = p.parse_args()
    print(f"{'frame':>10} | {'frames':>6} | {'node p50/p90 ms':>16} | {'age p50 ms':>10} | "
          f"{'peer write p50 ms':>17} | {'round trip p50 ms':>17}")
    for size in args.sizes:
        r = run_size(size, args, args.domain)
        n, peer = r["node"], r["peer"]
        print(f"{size:>10} | {n['published']:>6} | {n['latency_p50_ms']:>7.1f} / {n['latency_p90_ms']:<6.1f} | "
              f"{n['age_p50_ms']:>10.1f} | {peer['write_ms']['p50']:>17.1f} | {peer['round_trip_ms']['p50']:>17.1f}")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
