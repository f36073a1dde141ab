"""Soak test of a running `dosod serve` (stdlib only): mixed load for --minutes while the
server's RSS and open files are sampled, to catch leaks and errors that only show over time.

Threads, all at once:

* detect clients (--detect-threads, default 2) cycling the request forms over the photos in
  tests/fixtures/images: multipart, raw image body, JSON base64, multipart with
  `?annotate=true`, `/v1/detect/batch` with 2-4 images; a different `classes=` list (or none)
  on each request;
* vocabulary churn: PUT /v1/vocabularies/soak-N (N = 0..9) with random class names from a
  small word list, detect with `vocabulary=soak-N`, DELETE it, detect with it again (404);
* slow clients: one thread uploads the smallest photo in --slow-chunk bytes every
  --slow-pause-ms, another opens --half-open connections that send half a request's headers
  and go silent, and waits for the server to close them (its header timeout; not closed within
  --half-open-wait-s counts as an error);
* bad requests: garbage image bytes, malformed / wrong JSON, a multipart without an image, an
  unknown vocabulary (each expects a 4xx).

Every answer is counted by status and request kind. Errors: any 5xx, a connection failure,
or an answer a request does not expect (a 4xx other than 429 to a valid request, a 2xx to a bad
one); the first --max-listed are listed with their time and details. Every --sample-s seconds:
elapsed minutes, server RSS (MB, /proc/PID/status VmRSS), open files (/proc/PID/fd), requests
done, errors. Written to DIR: soak.csv (the samples), soak.json (samples, totals, latencies,
errors, and least-squares slopes of RSS in MB/hour and open files per hour over all samples and
over their second half), soak.svg (RSS and open files against minutes). Ctrl-C stops early and
still writes them.

    .venv/bin/python -m dosod_tools.checks.soak --url http://127.0.0.1:18111 --pid PID --minutes 30 --out /tmp/soak [--key K]
"""

from __future__ import annotations

import argparse
import base64
import collections
import csv
import http.client
import json
import math
import random
import select
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from .. import REPO_ROOT
from .hostile import host_port, open_fds, percentile, raise_nofile, rss_mb, stop_on_signals

IMAGES_DIR = REPO_ROOT / "tests" / "fixtures" / "images"
WORDS = [
    "person", "bus", "car", "dog", "cat", "bicycle", "tie", "traffic light", "horse", "bird",
    "backpack", "umbrella", "chair", "bottle", "cup", "laptop", "red truck", "stop sign",
    "pizza", "teddy bear", "handbag", "skateboard", "potted plant", "clock", "boat",
]
OK = frozenset({200})
RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest)


# ----------------------------------------------------------------------------- pure helpers


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of the least-squares line through (xs, ys); NaN for fewer than two points or
    no spread in x."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    n = len(pts)
    if n < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """About `target` round tick values (steps of 1, 2 or 5 x 10^k) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _label(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def svg_chart(
    title: str,
    xs: Sequence[float],
    left: tuple[str, Sequence[float], str],
    right: tuple[str, Sequence[float], str] | None = None,
    xlabel: str = "minutes",
    width: int = 800,
    height: int = 420,
) -> str:
    """A hand-written SVG line chart: `left` = (label, ys, colour) on the left axis, optional
    `right` on a second axis; axes, tick labels, a legend and the title."""
    ml, mr, mt, mb = 70, 70 if right else 20, 40, 50
    pw, ph = width - ml - mr, height - mt - mb
    xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    x0, x1 = xt[0], xt[-1]

    def sx(x: float) -> float:
        return ml + (x - x0) / ((x1 - x0) or 1) * pw

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for x in xt:
        out.append(f'<line x1="{sx(x):.1f}" y1="{mt}" x2="{sx(x):.1f}" y2="{mt + ph}" stroke="#eee"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{mt + ph + 16}" text-anchor="middle">{_label(x)}</text>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    for side, series in (("left", left), ("right", right)):
        if series is None:
            continue
        label, ys, colour = series
        vals = [y for y in ys if y is not None and math.isfinite(y)]
        yt = nice_ticks(min(vals, default=0.0), max(vals, default=1.0))
        y0, y1 = yt[0], yt[-1]

        def sy(y: float, y0: float = y0, y1: float = y1) -> float:
            return mt + ph - (y - y0) / ((y1 - y0) or 1) * ph

        ax = ml if side == "left" else ml + pw
        off, anchor = (-6, "end") if side == "left" else (6, "start")
        out.append(f'<line x1="{ax}" y1="{mt}" x2="{ax}" y2="{mt + ph}" stroke="{colour}"/>')
        for y in yt:
            out.append(f'<line x1="{ax}" y1="{sy(y):.1f}" x2="{ax + (-4 if side == "left" else 4)}" '
                       f'y2="{sy(y):.1f}" stroke="{colour}"/>')
            out.append(f'<text x="{ax + off}" y="{sy(y) + 4:.1f}" text-anchor="{anchor}" fill="{colour}">'
                       f'{_label(y)}</text>')
            if side == "left":
                out.append(f'<line x1="{ml}" y1="{sy(y):.1f}" x2="{ml + pw}" y2="{sy(y):.1f}" stroke="#eee"/>')
        rot_x = 16 if side == "left" else width - 12
        out.append(f'<text x="{rot_x}" y="{mt + ph / 2:.1f}" text-anchor="middle" fill="{colour}" '
                   f'transform="rotate(-90 {rot_x} {mt + ph / 2:.1f})">{escape(label)}</text>')
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if y is not None and math.isfinite(y))
        if pts:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        ly = mt + 14 + (0 if side == "left" else 16)
        out.append(f'<line x1="{ml + 10}" y1="{ly - 4}" x2="{ml + 30}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{ml + 36}" y="{ly}">{escape(label)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def multipart(fields: Iterable[tuple[str, bytes | str, str | None, str | None]]) -> tuple[bytes, str]:
    """multipart/form-data from (name, value, filename, content type); return (body, header)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value, filename, ctype in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        parts.append(head.encode() + b"\r\n" + (value.encode() if isinstance(value, str) else value) + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# ----------------------------------------------------------------------------- bookkeeping


class Stats:
    """Answers by status and kind, latencies, errors; shared by the workers."""

    def __init__(self, max_listed: int) -> None:
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.requests = 0
        self.errors = 0
        self.by_status: collections.Counter = collections.Counter()
        self.by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.listed: list[dict] = []
        self.max_listed = max_listed

    def answer(self, kind: str, status: str, ms: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.by_status[status] += 1
            self.by_kind[kind][status] += 1
            self.latency[kind].append(ms)
            if not ok:
                self._error(kind, status, detail)

    def error(self, kind: str, what: str, detail: str = "") -> None:
        with self.lock:
            self._error(kind, what, detail)

    def _error(self, kind: str, what: str, detail: str) -> None:
        self.errors += 1
        if len(self.listed) < self.max_listed:
            self.listed.append({"minutes": round((time.monotonic() - self.start) / 60, 3), "kind": kind,
                                "what": what, "detail": detail[:300]})

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.requests, self.errors


class Client:
    """One keep-alive connection with a retry when a reused connection turns out closed."""

    def __init__(self, host: str, port: int, timeout: float, key: str) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.key = key
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, self.used = None, False

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
                headers: dict | None = None) -> tuple[int, bytes, dict]:
        hdrs = {"User-Agent": "dosod-soak", **(headers or {})}
        if self.key:
            hdrs["x-api-key"] = self.key
        if ctype:
            hdrs["Content-Type"] = ctype
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.used = False
            reused = self.used
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
            except RETRYABLE:
                self.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            self.used = True
            if resp.will_close:
                self.close()
            return resp.status, data, dict(resp.getheaders())
        raise AssertionError("unreachable")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host, self.port = host_port(args.url)
        self.stop = threading.Event()
        self.stats = Stats(args.max_listed)
        self.images = []
        for p in sorted(IMAGES_DIR.iterdir()):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                ctype = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
                self.images.append((p.name, p.read_bytes(), ctype))
        if not self.images:
            raise SystemExit(f"no images in {IMAGES_DIR}")

    # -- one request, counted
    def call(self, client: Client, kind: str, method: str, path: str, body: bytes | None = None,
             ctype: str | None = None, expect: Callable[[int], bool] = lambda s: s in OK) -> int | None:
        t = time.perf_counter()
        try:
            status, data, _ = client.request(method, path, body, ctype)
        except (OSError, http.client.HTTPException) as e:
            self.stats.answer(kind, "conn-error", (time.perf_counter() - t) * 1000, False,
                              f"{method} {path}: {type(e).__name__}: {e}")
            return None
        ms = (time.perf_counter() - t) * 1000
        ok = status < 500 and (expect(status) or status == 429)
        detail = "" if ok else f"{method} {path}: {data[:200].decode('utf-8', 'replace')}"
        self.stats.answer(kind, str(status), ms, ok, detail)
        return status

    def run_worker(self, name: str, body: Callable[[random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                body(rng)
            except Exception as e:  # a bug in a worker must not end the soak silently
                self.stats.error(name, "worker-exception", f"{type(e).__name__}: {e}")
                self.stop.wait(1.0)

    def classes_query(self, rng: random.Random) -> dict:
        r = rng.random()
        if r < 0.3:
            return {}
        return {"classes": ",".join(rng.sample(WORDS, rng.randint(1, 6)))}

    # -- (i) detect clients
    def detect_loop(self, client: Client) -> Callable[[random.Random], None]:
        forms = ["multipart", "raw", "json", "annotate", "batch"]
        counter = iter(range(1 << 62))

        def step(rng: random.Random) -> None:
            form = forms[next(counter) % len(forms)]
            name, img, ctype = rng.choice(self.images)
            q = self.classes_query(rng)
            if rng.random() < 0.3:
                q["score_threshold"] = str(rng.choice([0.05, 0.1, 0.25, 0.5]))
            if form == "multipart":
                fields = [("image", img, name, ctype)]
                if "classes" in q and rng.random() < 0.5:  # as a form field instead of the query
                    fields.append(("classes", q.pop("classes"), None, None))
                body, ct = multipart(fields)
                path = "/v1/detect"
            elif form == "raw":
                body, ct, path = img, ctype, "/v1/detect"
            elif form == "json":
                body = json.dumps({"image": base64.b64encode(img).decode()}).encode()
                ct, path = "application/json", "/v1/detect"
            elif form == "annotate":
                body, ct = multipart([("image", img, name, ctype)])
                q["annotate"] = "true"
                path = "/v1/detect"
            else:
                picks = [rng.choice(self.images) for _ in range(rng.randint(2, 4))]
                body, ct = multipart([("image", b, n, c) for n, b, c in picks])
                path = "/v1/detect/batch"
            if q:
                path += "?" + urllib.parse.urlencode(q)
            self.call(client, f"detect-{form}", "POST", path, body, ct)

        return step

    # -- (ii) vocabulary churn
    def vocab_loop(self, client: Client) -> Callable[[random.Random], None]:
        counter = iter(range(1 << 62))

        def step(rng: random.Random) -> None:
            vname = f"soak-{next(counter) % 10}"
            classes = rng.sample(WORDS, rng.randint(1, 8))
            body = json.dumps({"classes": classes}).encode()
            self.call(client, "vocab-put", "PUT", f"/v1/vocabularies/{vname}", body, "application/json",
                      expect=lambda s: s in (200, 201, 204))
            self.call(client, "vocab-get", "GET", f"/v1/vocabularies/{vname}")
            name, img, ctype = rng.choice(self.images)
            self.call(client, "vocab-detect", "POST", f"/v1/detect?vocabulary={vname}", img, ctype)
            self.call(client, "vocab-delete", "DELETE", f"/v1/vocabularies/{vname}",
                      expect=lambda s: s in (200, 204))
            self.call(client, "vocab-detect-deleted", "POST", f"/v1/detect?vocabulary={vname}", img, ctype,
                      expect=lambda s: 400 <= s < 500)

        return step

    # -- (iii) slow clients
    def raw_socket(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=self.args.timeout)

    def slow_upload(self, rng: random.Random) -> None:
        name, img, ctype = min(self.images, key=lambda t: len(t[1]))
        a = self.args
        head = (f"POST /v1/detect HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(img)}\r\nConnection: close\r\nUser-Agent: dosod-soak/slow\r\n"
                + (f"x-api-key: {a.key}\r\n" if a.key else "") + "\r\n").encode()
        t = time.perf_counter()
        try:
            with self.raw_socket() as s:
                s.sendall(head)
                for off in range(0, len(img), a.slow_chunk):
                    if self.stop.wait(a.slow_pause_ms / 1000):
                        return  # stopped mid-upload: neither an answer nor an error
                    s.sendall(img[off: off + a.slow_chunk])
                resp = http.client.HTTPResponse(s)
                resp.begin()
                data = resp.read()
                status = resp.status
        except (OSError, http.client.HTTPException) as e:
            self.stats.answer("slow-upload", "conn-error", (time.perf_counter() - t) * 1000, False,
                              f"{type(e).__name__}: {e}")
            return
        ok = status in OK or status == 429
        self.stats.answer("slow-upload", str(status), (time.perf_counter() - t) * 1000, ok,
                          "" if ok else data[:200].decode("utf-8", "replace"))

    def half_headers(self, rng: random.Random) -> None:
        a = self.args
        socks = []
        t = time.perf_counter()
        try:
            for _ in range(a.half_open):
                s = self.raw_socket()
                s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nX-Slow: ")
                socks.append(s)
        except OSError as e:
            self.stats.answer("half-headers", "conn-error", 0.0, False, f"open: {type(e).__name__}: {e}")
        pending = {s: t for s in socks}
        deadline = t + a.half_open_wait_s
        while pending and not self.stop.is_set() and time.perf_counter() < deadline:
            ready, _, _ = select.select(list(pending), [], [], 0.5)
            for s in ready:
                try:
                    data = s.recv(4096)
                    what = "closed" if not data else (
                        "HTTP " + data.split(b" ", 2)[1].decode("latin-1") if data.startswith(b"HTTP/") else "bytes")
                except ConnectionResetError:
                    what = "reset"
                except OSError as e:
                    what = type(e).__name__
                # an answer to the half request (e.g. 408) or a close are both the expected ending
                self.stats.answer("half-headers", what, (time.perf_counter() - pending.pop(s)) * 1000, True)
                s.close()
        if pending and not self.stop.is_set():
            for s in pending:
                self.stats.answer("half-headers", "not-closed", (time.perf_counter() - t) * 1000, False,
                                  f"half-sent headers still open after {a.half_open_wait_s:.0f} s")
        for s in socks:
            s.close()

    # -- (iv) bad requests
    def bad_loop(self, client: Client) -> Callable[[random.Random], None]:
        counter = iter(range(1 << 62))
        bad4 = lambda s: 400 <= s < 500  # noqa: E731

        def step(rng: random.Random) -> None:
            which = next(counter) % 6
            if which == 0:
                garbage = bytes([0xFF, 0xD8]) + rng.randbytes(rng.randint(10, 20000))
                self.call(client, "bad-garbage-image", "POST", "/v1/detect", garbage, "image/jpeg", bad4)
            elif which == 1:
                self.call(client, "bad-json-syntax", "POST", "/v1/detect", b'{"image": "abc', "application/json", bad4)
            elif which == 2:
                self.call(client, "bad-json-type", "POST", "/v1/detect", b'{"image": 12, "classes": {}}',
                          "application/json", bad4)
            elif which == 3:
                self.call(client, "bad-json-base64", "POST", "/v1/detect", b'{"image": "!!!not base64!!!"}',
                          "application/json", bad4)
            elif which == 4:
                _, img, ctype = rng.choice(self.images)
                self.call(client, "bad-unknown-vocabulary", "POST",
                          f"/v1/detect?vocabulary=soak-unknown-{rng.randint(0, 1 << 30)}", img, ctype, bad4)
            else:
                body, ct = multipart([("classes", "person", None, None)])
                self.call(client, "bad-no-image", "POST", "/v1/detect", body, ct, bad4)
            self.stop.wait(self.args.bad_pause_ms / 1000)

        return step

    # -- the run
    def sample(self) -> dict:
        req, err = self.stats.snapshot()
        rss = rss_mb(self.args.pid)
        return {"minutes": round((time.monotonic() - self.stats.start) / 60, 3),
                "rss_mb": None if rss is None else round(rss, 1), "open_fds": open_fds(self.args.pid),
                "requests": req, "errors": err}

    def run(self) -> list[dict]:
        a = self.args
        clients: list[Client] = []

        def client() -> Client:
            c = Client(self.host, self.port, a.timeout, a.key)
            clients.append(c)
            return c

        jobs: list[tuple[str, Callable[[random.Random], None]]] = []
        for i in range(a.detect_threads):
            jobs.append((f"detect-{i}", self.detect_loop(client())))
        jobs.append(("vocab", self.vocab_loop(client())))
        jobs.append(("bad", self.bad_loop(client())))
        if a.slow_chunk > 0:
            jobs.append(("slow-upload", self.slow_upload))
        if a.half_open > 0:
            jobs.append(("half-headers", self.half_headers))
        threads = [threading.Thread(target=self.run_worker, args=(n, f, a.seed + i), name=n, daemon=True)
                   for i, (n, f) in enumerate(jobs)]
        samples = [self.sample()]
        print(f"soak: {a.minutes} min against {a.url} (pid {a.pid}), {len(threads)} threads; start RSS "
              f"{samples[0]['rss_mb']} MB, {samples[0]['open_fds']} open files", flush=True)
        for t in threads:
            t.start()
        end = self.stats.start + a.minutes * 60
        k = 1
        try:
            while True:
                target = min(self.stats.start + k * a.sample_s, end)
                if self.stop.wait(max(0.0, target - time.monotonic())):
                    break
                s = self.sample()
                samples.append(s)
                print(f"  {s['minutes']:7.2f} min  RSS {s['rss_mb']} MB  fds {s['open_fds']}  "
                      f"requests {s['requests']}  errors {s['errors']}", flush=True)
                if s["rss_mb"] is None:
                    self.stats.error("server", "gone", f"process {a.pid} is gone")
                    break
                if target >= end:
                    break
                k += 1
        except KeyboardInterrupt:
            print("interrupted: stopping the workers", flush=True)
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=a.timeout + 5)
            for c in clients:
                c.close()
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                self.stats.error("soak", "threads-not-stopped", ", ".join(stuck))
        if samples[-1]["minutes"] < a.minutes - 1 / 60:  # stopped early: one last sample
            samples.append(self.sample())
        return samples


def slopes(samples: Sequence[dict], key: str) -> dict:
    """Per-hour least-squares slopes of `key` over all samples and their second half."""
    pts = [(s["minutes"] / 60, s[key]) for s in samples if s[key] is not None]
    half = pts[len(pts) // 2:]

    def fit(p: Sequence[tuple[float, float]]) -> float | None:
        v = least_squares_slope([x for x, _ in p], [y for _, y in p])
        return None if math.isnan(v) else round(v, 3)

    return {"all": fit(pts), "second_half": fit(half), "points": len(pts), "second_half_points": len(half)}


def write_outputs(out: Path, args: argparse.Namespace, samples: list[dict], stats: Stats) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cols = ["minutes", "rss_mb", "open_fds", "requests", "errors"]
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for s in samples:
            w.writerow({k: s[k] for k in cols})
    lat = {k: {"n": len(v), "median": round(percentile(v, 50), 1), "p99": round(percentile(v, 99), 1),
               "max": round(max(v), 1)} for k, v in sorted(stats.latency.items()) if v}
    rss = [s["rss_mb"] for s in samples if s["rss_mb"] is not None]
    totals = {
        "minutes": samples[-1]["minutes"],
        "requests": stats.requests,
        "errors": stats.errors,
        "by_status": dict(stats.by_status.most_common()),
        "by_kind": {k: dict(v.most_common()) for k, v in sorted(stats.by_kind.items())},
        "rss_start_mb": rss[0] if rss else None,
        "rss_end_mb": rss[-1] if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        "fds_start": samples[0]["open_fds"],
        "fds_end": samples[-1]["open_fds"],
    }
    report = {
        "url": args.url, "pid": args.pid, "minutes_planned": args.minutes, "sample_s": args.sample_s,
        "totals": totals,
        "rss_slope_mb_per_hour": slopes(samples, "rss_mb"),
        "fds_slope_per_hour": slopes(samples, "open_fds"),
        "latency_ms": lat,
        "errors_listed": stats.listed,
        "samples": samples,
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    xs = [s["minutes"] for s in samples]
    half = report["rss_slope_mb_per_hour"]["second_half"]
    title = (f"dosod soak, {totals['minutes']:.3g} min: {totals['requests']} requests, {totals['errors']} errors, "
             f"RSS slope {'n/a' if half is None else f'{half:.1f}'} MB/h (second half)")
    (out / "soak.svg").write_text(svg_chart(
        title, xs, ("RSS MB", [s["rss_mb"] for s in samples], "#1f77b4"),
        ("open files", [s["open_fds"] for s in samples], "#d62728")))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the server's base URL")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id (RSS, open files)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True, help="folder for soak.csv, soak.json, soak.svg")
    parser.add_argument("--key", default="", help="API key (sent as x-api-key)")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--detect-threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each socket operation")
    parser.add_argument("--slow-chunk", type=int, default=4096, help="slow upload chunk bytes (0: no slow uploads)")
    parser.add_argument("--slow-pause-ms", type=float, default=200.0)
    parser.add_argument("--half-open", type=int, default=2, help="half-header connections at a time (0: none)")
    parser.add_argument("--half-open-wait-s", type=float, default=30.0,
                        help="a half-header connection still open after this is an error")
    parser.add_argument("--bad-pause-ms", type=float, default=50.0, help="pause between bad requests")
    parser.add_argument("--max-listed", type=int, default=200, help="errors listed in soak.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    stop_on_signals()
    raise_nofile()
    if rss_mb(args.pid) is None:
        raise SystemExit(f"no process {args.pid} (or /proc/{args.pid}/status not readable)")
    soak = Soak(args)
    samples = soak.run()
    report = write_outputs(args.out, args, samples, soak.stats)
    t = report["totals"]
    rs, fs = report["rss_slope_mb_per_hour"], report["fds_slope_per_hour"]
    print(f"done: {t['minutes']:.2f} min, {t['requests']} requests, {t['errors']} errors")
    print(f"  by status: {t['by_status']}")
    for kind, counts in t["by_kind"].items():
        lat = report["latency_ms"].get(kind, {})
        print(f"  {kind:24s} {counts}  median {lat.get('median')} ms, p99 {lat.get('p99')} ms")
    print(f"  RSS {t['rss_start_mb']} -> {t['rss_end_mb']} MB (max {t['rss_max_mb']}); slope {rs['all']} MB/h "
          f"(all), {rs['second_half']} MB/h (second half)")
    print(f"  open files {t['fds_start']} -> {t['fds_end']}; slope {fs['all']}/h (all), {fs['second_half']}/h "
          f"(second half)")
    for e in report["errors_listed"][:20]:
        print(f"  error at {e['minutes']} min: {e['kind']} {e['what']} {e['detail']}")
    if t["errors"] > len(report["errors_listed"][:20]):
        print(f"  ... {t['errors']} errors in all; see {args.out / 'soak.json'}")
    print(f"wrote {args.out / 'soak.csv'}, {args.out / 'soak.json'}, {args.out / 'soak.svg'}")
    sys.exit(1 if t["errors"] else 0)


if __name__ == "__main__":
    main()
