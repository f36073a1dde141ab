"""The scale-out test (docs/deploy.md): Debian's redis-server and nginx on loopback, three
`dosod serve` replicas sharing the Redis vocabulary store behind deploy/nginx/dosod.conf, and a
client at concurrency --concurrency through nginx for --seconds. Meanwhile, in this order:

1. a vocabulary PUT on one replica, polled on the other two until they serve it (time to
   visibility; --visibility-rounds times); then two replicas PUT one name at the same moment,
   and all three must come to serve what Redis kept;
2. replica 1 killed with SIGKILL, and restarted later: its `/health/ready` is polled from the
   start, and must say 503 until the warm-up forward pass has run;
3. replica 2 rolled: SIGTERM, it must exit within its grace period, then it is started again;
4. Redis killed with SIGKILL: replicas keep serving the vocabularies they know, a PUT answers
   503 `store_unavailable` (directly and through nginx, whose upstream must stay whole); Redis
   restarted from its append-only file: every vocabulary that was acknowledged is still there,
   on every replica, and writes work again.

Printed (and written with --json): requests sent / answered 200 / failed, latency p50 / p99,
time to visibility, the readiness of the restarted replica, and the Redis outage's checks.
Exits 1 when a goal is missed: any failed request, visibility above 1 s, a vocabulary lost, a
replica ready before warm-up, or a rolled replica slower to stop than its grace period.

    .venv/bin/python -m dosod_tools.deploy.scaleout [--seconds 36] [--concurrency 16] [--json F]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import REPO_ROOT
from ..checks.hostile import percentile

NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "dosod.conf"
IMAGE = REPO_ROOT / "tests" / "fixtures" / "images" / "bus.jpg"
GRACE_MS = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body); (0, reason) when it cannot connect."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return r.status, r.read()
    except OSError as e:
        return 0, str(e).encode()
    finally:
        con.close()


def wait_for(what: str, check, timeout: float, every: float = 0.05):
    """Polls `check()` until it returns a true value; fails with `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = check()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


class Redis:
    """redis-server on loopback with the append-only file on (fsync on every write)."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_for("redis-server answers", self.ping, 30)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def hkeys(self) -> list[str]:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "hkeys", "dosod:vocabularies"],
                             capture_output=True, text=True, check=True).stdout
        return sorted(out.split())

    def classes(self, name: str) -> list[str] | None:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "hget", "dosod:vocabularies", name],
                             capture_output=True, text=True, check=True).stdout.strip()
        return json.loads(out)["spec"]["classes"] if out else None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Nginx:
    """nginx with deploy/nginx/dosod.conf, its upstream servers and listen port replaced."""

    def __init__(self, workdir: Path, replicas: list[int]):
        self.dir = workdir / "nginx"
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        site = NGINX_CONF.read_text()
        servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+ .*;$", site, flags=re.M)
        if len(servers) != 3:
            raise SystemExit(f"{NGINX_CONF}: expected 3 upstream servers, found {len(servers)}")
        for line, port in zip(servers, replicas, strict=True):
            site = site.replace(line, re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", line))
        site, n = re.subn(r"listen 8080;", f"listen 127.0.0.1:{self.port};", site)
        assert n == 1, "the listen line of dosod.conf"
        (self.dir / "dosod.conf").write_text(site)
        (self.dir / "nginx.conf").write_text(
            f"worker_processes 2;\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/logs/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n  access_log {self.dir}/logs/access.log;\n"
            f"  client_body_temp_path {self.dir}/body;\n  proxy_temp_path {self.dir}/proxy;\n"
            f"  fastcgi_temp_path {self.dir}/fcgi;\n  uwsgi_temp_path {self.dir}/uwsgi;\n"
            f"  scgi_temp_path {self.dir}/scgi;\n  include {self.dir}/dosod.conf;\n}}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run([nginx, "-t", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"nginx -t: {check.stderr}")
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "logs" / "stderr.log", "ab"))
        wait_for("nginx listens", lambda: request(self.port, "GET", "/health/live")[0] == 200, 30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Readiness:
    """What /health/ready said from a replica's start until its first 200."""
    refused: int = 0
    warming_503: int = 0
    other: list[str] = field(default_factory=list)
    start_to_ready_s: float | None = None
    listening_line_before_ready: bool | None = None


class Replica:
    def __init__(self, idx: int, binary: Path, model: Path, redis_url: str, workdir: Path):
        self.idx, self.binary, self.model, self.redis_url = idx, binary, model, redis_url
        self.dir = workdir / f"replica{idx}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.listening = threading.Event()

    def start(self, *extra: str) -> None:
        self.listening.clear()
        cmd = [str(self.binary), "--model", str(self.model), "--intra-threads", "1",
               "--vocab-store", self.redis_url, "--data-dir", str(self.dir / "data"),
               "--log-format", "json", "--log-level", "info",
               "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-streams",
               "--shutdown-grace-ms", str(GRACE_MS), *extra]
        log = open(self.dir / "dosod.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT)

        def read(proc: subprocess.Popen) -> None:
            for line in proc.stdout:
                if line.startswith(b"listening on"):
                    self.listening.set()
        threading.Thread(target=read, args=(self.proc,), daemon=True).start()

    def watch_readiness(self, timeout: float = 120) -> Readiness:
        """Polls /health/ready every 5 ms from now until its first 200."""
        r, t0 = Readiness(), time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"replica {self.idx} exited ({self.proc.returncode}): see {self.dir}/dosod.log")
            status, body = request(self.port, "GET", "/health/ready", timeout=2)
            if status == 200:
                r.start_to_ready_s = time.monotonic() - t0
                # The server marks itself warm, then prints the line: it must be there (or
                # arrive within the pipe's delay) and the 200 must say warm-up has run.
                r.listening_line_before_ready = (
                    self.listening.wait(5) and json.loads(body).get("status") == "ready")
                return r
            if status == 0:
                r.refused += 1
            elif status == 503 and b"warming up" in body:
                r.warming_503 += 1
            else:
                r.other.append(f"{status} {body[:120]!r}")
            time.sleep(0.005)
        raise SystemExit(f"replica {self.idx} not ready within {timeout:.0f} s")

    def sigkill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def sigterm(self) -> float:
        """SIGTERM; returns the seconds it took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(GRACE_MS / 1000 + 30)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Load:
    """`concurrency` clients posting the same JPEG to nginx, each on its own keep-alive
    connection (reopened after any error), until stopped."""

    def __init__(self, port: int, concurrency: int):
        self.port, self.concurrency = port, concurrency
        self.body = IMAGE.read_bytes()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.ok = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(concurrency)]

    def client(self) -> None:
        con = None
        path = "/v1/detect?classes=person,bus&score_threshold=0.05"
        while not self.stop.is_set():
            if con is None:
                con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            t0 = time.monotonic()
            try:
                con.request("POST", path, body=self.body, headers={"Content-Type": "image/jpeg"})
                r = con.getresponse()
                payload = r.read()
                status = r.status
            except OSError as e:
                status, payload = 0, str(e).encode()
                con.close()
                con = None
            dt = time.monotonic() - t0
            with self.lock:
                self.sent += 1
                if status == 200 and b'"detections"' in payload:
                    self.ok += 1
                    self.latencies.append(dt)
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {status} {payload[:160]!r}")
        if con is not None:
            con.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)


def put_vocab(port: int, name: str, classes: list[str]) -> tuple[int, bytes]:
    return request(port, "PUT", f"/v1/vocabularies/{name}",
                   json.dumps({"classes": classes}).encode(), {"Content-Type": "application/json"})


def visibility(replicas: list[Replica], rounds: int) -> list[float]:
    """PUT on replica 0 (and DELETE, every other round); seconds until replicas 1 and 2 agree."""
    times = []
    for i in range(rounds):
        name = f"visible-{i}"
        status, body = put_vocab(replicas[0].port, name, ["forklift", "pallet", f"crate {i}"])
        if status != 200:
            raise SystemExit(f"PUT {name} on replica 0: {status} {body!r}")
        t0 = time.monotonic()
        for r in replicas[1:]:
            wait_for(f"{name} on replica {r.idx}",
                     lambda r=r: request(r.port, "GET", f"/v1/vocabularies/{name}")[0] == 200, 10, 0.002)
        times.append(time.monotonic() - t0)
        if i % 2 == 1:
            status, _ = request(replicas[1].port, "DELETE", f"/v1/vocabularies/{name}")
            if status != 204:
                raise SystemExit(f"DELETE {name} on replica 1: {status}")
            t0 = time.monotonic()
            for r in (replicas[0], replicas[2]):
                wait_for(f"{name} gone on replica {r.idx}",
                         lambda r=r: request(r.port, "GET", f"/v1/vocabularies/{name}")[0] == 404, 10, 0.002)
            times.append(time.monotonic() - t0)
    return times


def store_up(port: int) -> float | None:
    """`dosod_vocab_store_up` from /metrics."""
    m = re.search(rb"^dosod_vocab_store_up (\S+)$", request(port, "GET", "/metrics")[1], flags=re.M)
    return float(m.group(1)) if m else None


def contested(redis: Redis, replicas: list[Replica], rounds: int) -> list[float]:
    """Replicas 0 and 1 PUT the same name at the same moment; seconds until all three serve what
    Redis kept (the later write by Redis's order, whatever order the acknowledgements came in)."""
    times = []
    for i in range(rounds):
        barrier = threading.Barrier(2)

        def put(r: Replica, cls: str) -> None:
            barrier.wait()
            put_vocab(r.port, "contested", [cls])
        writers = [threading.Thread(target=put, args=(replicas[k], f"{'ab'[k]}{i}")) for k in (0, 1)]
        for t in writers:
            t.start()
        for t in writers:
            t.join(30)
        t0, kept = time.monotonic(), redis.classes("contested")

        def agree() -> bool:
            got = [request(r.port, "GET", "/v1/vocabularies/contested") for r in replicas]
            return all(st == 200 and json.loads(b)["classes"] == kept for st, b in got)
        wait_for(f"replicas agree on contested round {i}", agree, 40, 0.002)
        times.append(time.monotonic() - t0)
    return times


def redis_outage(redis: Redis, replicas: list[Replica], nginx: Nginx) -> dict:
    """Kills Redis (SIGKILL), checks reads and refused writes, restarts it from its AOF."""
    acknowledged = [n for n in ("fleet-a", "fleet-b") if put_vocab(replicas[0].port, n, ["truck", "van"])[0] == 200]
    before = redis.hkeys()
    redis.kill()
    # The replicas notice the closed connection (their subscriber reconnects and fails).
    wait_for("replicas see Redis down", lambda: all(
        not json.loads(request(r.port, "GET", "/health/ready")[1] or b"{}").get("store", {}).get("connected", True)
        for r in replicas), 30)
    reads = [request(r.port, "GET", "/v1/vocabularies/fleet-a")[0] for r in replicas]
    detect = request(replicas[2].port, "POST", "/v1/detect?vocabulary=fleet-b", IMAGE.read_bytes(),
                     {"Content-Type": "image/jpeg"})[0]
    status, body = put_vocab(replicas[1].port, "during-outage", ["boat"])
    refused = {"status": status, "error_type": json.loads(body).get("error_type") if body.startswith(b"{") else None}
    # Through nginx too, several times: the store's 503 must reach the client and must not count
    # as replica failures (the detection load goes on through the same upstream meanwhile).
    via_nginx = [put_vocab(nginx.port, f"during-outage-{i}", ["boat"])[0] for i in range(4)]
    ready_during = [request(r.port, "GET", "/health/ready")[0] for r in replicas]
    up_during = store_up(replicas[0].port)
    t0 = time.monotonic()
    redis.start()
    # Every replica's subscriber reconnects and resyncs.
    wait_for("replicas reconnected to Redis", lambda: all(
        json.loads(request(r.port, "GET", "/health/ready")[1] or b"{}").get("store", {}).get("connected")
        for r in replicas), 30)
    reconnect_s = time.monotonic() - t0
    after = redis.hkeys()
    served_after = {r.idx: [request(r.port, "GET", f"/v1/vocabularies/{n}")[0] for n in acknowledged] for r in replicas}
    write_after = put_vocab(replicas[1].port, "after-outage", ["boat"])[0]
    return {
        "metric_vocab_store_up": [up_during, store_up(replicas[0].port)],
        "acknowledged": acknowledged,
        "in_redis_before": before,
        "in_redis_after_restart": after,
        "lost": sorted(set(before) - set(after)),
        "reads_during_outage": reads,
        "detect_with_named_vocabulary_during_outage": detect,
        "put_during_outage": refused,
        "put_through_nginx_during_outage": via_nginx,
        "ready_during_outage": ready_during,
        "replicas_reconnected_s": round(reconnect_s, 2),
        "served_after_restart": served_after,
        "put_after_restart": write_after,
    }


def overload(nginx: Nginx, replicas: list[Replica]) -> dict:
    """Replicas 1 and 2 stopped, replica 0 restarted with a queue of one: a burst through nginx
    must get 429s, each with the replica's Retry-After."""
    for r in replicas:
        r.stop()
    replicas[0].start("--queue-size", "1", "--max-batch", "1", "--overload-delay-ms", "0")
    replicas[0].watch_readiness()
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    body = IMAGE.read_bytes()

    def one() -> None:
        con = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=60)
        try:
            con.request("POST", "/v1/detect?classes=person", body=body, headers={"Content-Type": "image/jpeg"})
            r = con.getresponse()
            r.read()
            with lock:
                answers.append((r.status, r.getheader("Retry-After")))
        finally:
            con.close()
    burst = [threading.Thread(target=one) for _ in range(24)]
    for t in burst:
        t.start()
    for t in burst:
        t.join(120)
    refused = [a for a in answers if a[0] == 429]
    return {
        "burst": len(answers),
        "answered_200": sum(1 for a in answers if a[0] == 200),
        "answered_429": len(refused),
        "retry_after": sorted({a[1] for a in refused}, key=str),
        "other": sorted({a[0] for a in answers} - {200, 429}),
    }


def run(args: argparse.Namespace) -> dict:
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install redis-server (scripts/deploy_test_deps.sh)")
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        raise SystemExit("nginx not found: apt-get install nginx (scripts/deploy_test_deps.sh)")
    work = Path(tempfile.mkdtemp(prefix="dosod-scaleout-"))
    # nginx's workers run as an unprivileged user when started as root: they need to get in.
    work.chmod(0o755)
    redis = Redis(work)
    redis.start()
    replicas = [Replica(i, args.bin, args.model, redis.url, work) for i in range(3)]
    nginx = None
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.watch_readiness()
        nginx = Nginx(work, [r.port for r in replicas])
        nginx.start()
        s = args.seconds
        events: dict = {}
        t0 = time.monotonic()

        def at(fraction: float) -> None:
            time.sleep(max(0.0, t0 + fraction * s - time.monotonic()))

        with Load(nginx.port, args.concurrency) as load:
            at(0.05)
            events["visibility_s"] = visibility(replicas, args.visibility_rounds)
            events["contested_s"] = contested(redis, replicas, 5)
            at(0.2)
            replicas[1].sigkill()
            events["sigkill_replica_1_at_s"] = round(time.monotonic() - t0, 1)
            at(0.35)
            replicas[1].start()
            events["restart_replica_1_at_s"] = round(time.monotonic() - t0, 1)
            events["restarted_readiness"] = replicas[1].watch_readiness().__dict__
            at(0.55)
            events["sigterm_replica_2_at_s"] = round(time.monotonic() - t0, 1)
            events["sigterm_exit_s"] = round(replicas[2].sigterm(), 2)
            events["sigterm_exit_code"] = replicas[2].proc.returncode
            replicas[2].start()
            events["rolled_readiness"] = replicas[2].watch_readiness().__dict__
            at(0.7)
            events["redis"] = redis_outage(redis, replicas, nginx)
            at(1.0)
        elapsed = time.monotonic() - t0
        events["overload"] = overload(nginx, replicas)
    finally:
        if nginx:
            nginx.stop()
        for r in replicas:
            r.stop()
        redis.kill()
    result = {
        "replicas": 3,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "sent": load.sent,
        "ok": load.ok,
        "failed": len(load.failures),
        "failures": load.failures[:20],
        "throughput_per_s": round(load.ok / elapsed, 1),
        "latency_p50_ms": round(1000 * percentile(load.latencies, 50), 1),
        "latency_p99_ms": round(1000 * percentile(load.latencies, 99), 1),
        "latency_max_ms": round(1000 * max(load.latencies, default=float("nan")), 1),
        **events,
        "workdir": str(work),
    }
    result["goals"] = goals(result)
    if all(result["goals"].values()) and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def goals(r: dict) -> dict[str, bool]:
    red = r["redis"]
    ready_ok = lambda x: x["listening_line_before_ready"] and not x["other"]  # noqa: E731
    return {
        "no request failed": r["failed"] == 0 and r["ok"] > 0,
        "a PUT or DELETE is seen on every replica within 1 s": max(r["visibility_s"]) < 1.0,
        "simultaneous PUTs of one name on two replicas: all agree with Redis within 1 s":
            max(r["contested_s"]) < 1.0,
        "the restarted replica is ready only after its warm-up": ready_ok(r["restarted_readiness"]),
        "the rolled replica stops within its grace period": r["sigterm_exit_s"] < GRACE_MS / 1000
        and r["sigterm_exit_code"] == 0 and ready_ok(r["rolled_readiness"]),
        "Redis outage: reads and detection go on, writes get 503 store_unavailable":
            all(s == 200 for s in red["reads_during_outage"])
            and red["detect_with_named_vocabulary_during_outage"] == 200
            and red["put_during_outage"] == {"status": 503, "error_type": "store_unavailable"}
            and red["put_through_nginx_during_outage"] == [503] * 4
            and all(s == 200 for s in red["ready_during_outage"])
            and red["metric_vocab_store_up"] == [0.0, 1.0],
        "429 reaches the client through nginx with Retry-After":
            r["overload"]["answered_429"] > 0 and None not in r["overload"]["retry_after"]
            and not r["overload"]["other"],
        "no acknowledged vocabulary lost across the Redis restart":
            not red["lost"] and len(red["acknowledged"]) == 2
            and set(red["acknowledged"]) <= set(red["in_redis_after_restart"])
            and all(s == 200 for v in red["served_after_restart"].values() for s in v)
            and red["put_after_restart"] == 200,
    }


def report(r: dict) -> str:
    rr, ro, red = r["restarted_readiness"], r["rolled_readiness"], r["redis"]
    vis = r["visibility_s"]
    lines = [
        f"scale-out: 3 replicas behind nginx, Redis vocabulary store, {r['concurrency']} clients for {r['seconds']} s",
        f"  requests: sent {r['sent']}, answered 200 {r['ok']}, failed {r['failed']}"
        f" ({r['throughput_per_s']}/s; latency p50 {r['latency_p50_ms']} ms, p99 {r['latency_p99_ms']} ms,"
        f" max {r['latency_max_ms']} ms)",
        f"  vocabulary PUT/DELETE on one replica visible on the others: max {1000 * max(vis):.1f} ms,"
        f" median {1000 * percentile(vis, 50):.1f} ms ({len(vis)} changes); simultaneous PUTs of one name on"
        f" two replicas: all agree with Redis within {1000 * max(r['contested_s']):.1f} ms ({len(r['contested_s'])} rounds)",
        f"  replica 1 SIGKILL at {r['sigkill_replica_1_at_s']} s, restarted at {r['restart_replica_1_at_s']} s:"
        f" ready after {rr['start_to_ready_s']:.2f} s ({rr['refused']} refused, {rr['warming_503']}"
        f" answered 503 warming up, ready only after the warm-up: {rr['listening_line_before_ready']})",
        f"  replica 2 SIGTERM at {r['sigterm_replica_2_at_s']} s: exited {r['sigterm_exit_code']} after"
        f" {r['sigterm_exit_s']} s (grace {GRACE_MS / 1000:.0f} s), ready again after {ro['start_to_ready_s']:.2f} s",
        f"  Redis SIGKILL: reads {red['reads_during_outage']}, detect with a named vocabulary"
        f" {red['detect_with_named_vocabulary_during_outage']}, PUT {red['put_during_outage']['status']}"
        f" {red['put_during_outage']['error_type']} (through nginx {red['put_through_nginx_during_outage']}),"
        f" ready {red['ready_during_outage']},"
        f" dosod_vocab_store_up {red['metric_vocab_store_up'][0]:g} (then {red['metric_vocab_store_up'][1]:g})",
        f"  Redis restarted (AOF): replicas resynced in {red['replicas_reconnected_s']} s; acknowledged"
        f" {red['acknowledged']} lost {red['lost']}; {len(red['in_redis_after_restart'])} vocabularies"
        f" in Redis; PUT after restart {red['put_after_restart']}",
    ]
    ov = r["overload"]
    lines.append(f"  one replica with a queue of 1, {ov['burst']} requests at once through nginx:"
                 f" {ov['answered_200']} answered 200, {ov['answered_429']} answered 429 with"
                 f" Retry-After {ov['retry_after']}")
    for goal, ok in r["goals"].items():
        lines.append(f"  [{'ok' if ok else 'MISSED'}] {goal}")
    for f in r["failures"]:
        lines.append(f"  failure: {f}")
    if not all(r["goals"].values()):
        lines.append(f"  logs kept in {r['workdir']}")
    return "\n".join(lines)


def write_and_judge(result: dict, outcomes: dict[str, bool], path: Path | None) -> int:
    """Writes `result` as JSON to `path` when given; the exit code: 0 when every outcome holds."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(outcomes.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, default=REPO_ROOT / "target" / "release" / "dosod")
    p.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "demo")
    p.add_argument("--seconds", type=float, default=36.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--visibility-rounds", type=int, default=6)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the logs even when every goal is met")
    args = p.parse_args(argv)
    if not os.environ.get("DOSOD_ORT_LIB"):
        raise SystemExit("DOSOD_ORT_LIB is not set: run through `make test-scaleout`")
    r = run(args)
    print(report(r))
    return write_and_judge(r, r["goals"], args.json)


if __name__ == "__main__":
    sys.exit(main())
