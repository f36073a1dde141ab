"""Hostile-client checks against a running `dosod serve` (stdlib only): what many stalled
connections cost the server, and whether it still answers while they are held.

`held-uploads`: opens --count connections that each send the headers of
`POST /v1/detect` (Content-Type image/jpeg, Content-Length --size, no API key unless --key is
given; the server should be started with --api-key) and the first 64 KiB of the body, then stop
sending and never read. While all are held, samples the server's RSS (/proc/PID/status VmRSS)
and open files (/proc/PID/fd) for --hold-s seconds; then reads without blocking what each
connection got back (status lines, e.g. 401, or closed by the server), closes them all, waits
for the server's open files to drop back and samples the RSS again. Reports RSS before, peak
while held and after, the increase, and the answers.

`half-open`: opens --count connections that send only part of a request
(`GET /health/live HTTP/1.1\\r\\nHost: x\\r\\nX-Slow:`) and go silent; while they are held,
times --probes sequential `GET /health/live` requests, each on a fresh connection
(`Connection: close`): median, p90, p99 and max latency in ms (a failed probe counts the time
until it failed), failures (not 200, or a connection error), the server's open files; then holds them until --hold-s after the first was opened and reports how many the
server ended (its header timeout) and when.

Both raise this process's open-file soft limit to the hard limit first (the server needs a
large one too: start it under `ulimit -n 20000`). Each prints a readable summary, then one
JSON line of results.

    .venv/bin/python -m dosod_tools.checks.hostile held-uploads --url http://127.0.0.1:18111 --pid PID --count 1000 --size 18000000
    .venv/bin/python -m dosod_tools.checks.hostile half-open --url http://127.0.0.1:18111 --pid PID --count 2000 --probes 200
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

FIRST_BODY_BYTES = 64 << 10
PARTIAL_REQUEST = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow:"


def raise_nofile() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread (also when started in the
    background, where a shell leaves SIGINT ignored), so the sockets are closed on the way out."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def rss_mb(pid: int) -> float | None:
    """The process's resident set (VmRSS) in MB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    """How many files the process has open, or None when it is gone (or not readable)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * min(max(q, 0.0), 100.0) / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL."""
    parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme not in ("http", ""):
        raise SystemExit(f"only http:// URLs are supported, not {url!r}")
    return parts.hostname or "127.0.0.1", parts.port or 80


def open_many(
    count: int, batch: int, opener: Callable[[int], socket.socket], label: str
) -> tuple[list[socket.socket], collections.Counter]:
    """Run `opener(i)` for i < count, `batch` at a time on threads; return the sockets it
    made and a Counter of the failures (by exception name)."""
    socks: list[socket.socket] = []
    failures: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            s = opener(i)
        except OSError as e:
            with lock:
                failures[type(e).__name__] += 1
            return
        with lock:
            socks.append(s)

    start = time.monotonic()
    for first in range(0, count, batch):
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(first, min(first + batch, count))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = min(first + batch, count)
        if done == count or (done // batch) % 5 == 0:
            print(f"  {label}: {done}/{count} tried, {len(socks)} open, {sum(failures.values())} failed "
                  f"({time.monotonic() - start:.1f} s)", flush=True)
    return socks, failures


def poll_answers(socks: Sequence[socket.socket]) -> dict[int, str]:
    """Read, without blocking, what each socket got: its status line (`HTTP/1.1 401`) followed
    by `, closed` / `, reset` when the server also ended the connection, or `, open`; `closed`
    (EOF), `reset`, `error:<name>` without an answer; sockets with nothing to read are left out."""
    got: dict[int, str] = {}
    for idx, s in enumerate(socks):
        data = b""
        end = "open"
        s.setblocking(False)  # with a timeout set, recv would first wait for data that long
        while len(data) < 1 << 20:
            try:
                chunk = s.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:
                end = "reset"
                break
            except OSError as e:
                end = f"error:{type(e).__name__}"
                break
            if not chunk:
                end = "closed"
                break
            data += chunk
        if data.startswith(b"HTTP/"):
            status = " ".join(data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)[:2])
            got[idx] = f"{status}, {end}"
        elif data:
            got[idx] = f"other bytes, {end}"
        elif end != "open":
            got[idx] = end
    return got


class _Done:
    """Stands in poll_answers' input for a socket already accounted for: nothing to read."""

    def setblocking(self, flag: bool) -> None:
        pass

    def recv(self, n: int, flags: int = 0) -> bytes:
        raise BlockingIOError


_DONE = _Done()


def answer_counts(answers: dict[int, str], total: int) -> dict[str, int]:
    """A Counter of `poll_answers` output with the silent ones as `no answer`, largest first."""
    counts = collections.Counter(answers.values())
    counts["no answer"] = total - len(answers)
    return dict(counts.most_common())


def close_all(socks: Sequence[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def wait_fds_back(pid: int, baseline: int | None, slack: int, timeout: float) -> tuple[int | None, float]:
    """Wait until the server's open files are at most `baseline + slack` (or `timeout`
    seconds pass); return (open files then, seconds waited)."""
    start = time.monotonic()
    fds = open_fds(pid)
    while baseline is not None and fds is not None and fds > baseline + slack and time.monotonic() - start < timeout:
        time.sleep(0.1)
        fds = open_fds(pid)
    return fds, time.monotonic() - start


def sample_for(pid: int, seconds: float, every: float = 0.2) -> tuple[list[float], list[int]]:
    """Sample RSS (MB) and open files for `seconds`."""
    rss: list[float] = []
    fds: list[int] = []
    end = time.monotonic() + seconds
    while True:
        r, f = rss_mb(pid), open_fds(pid)
        if r is not None:
            rss.append(r)
        if f is not None:
            fds.append(f)
        if time.monotonic() >= end:
            return rss, fds
        time.sleep(every)


def check_alive(pid: int) -> None:
    if rss_mb(pid) is None:
        raise SystemExit(f"no process {pid} (or /proc/{pid}/status not readable)")


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def held_uploads(args: argparse.Namespace) -> dict:
    host, port = host_port(args.url)
    head = (
        f"POST /v1/detect HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {args.size}\r\nUser-Agent: dosod-hostile/held-uploads\r\n"
        + (f"x-api-key: {args.key}\r\n" if args.key else "")
        + "\r\n"
    ).encode("latin-1")
    first = bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes(min(FIRST_BODY_BYTES, args.size) - 4)

    send_failures: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def opener(_: int) -> socket.socket:
        s = socket.create_connection((host, port), timeout=args.timeout)
        try:
            s.sendall(head + first)
        except OSError as e:  # e.g. the server answered and closed: kept, polled as closed / reset
            with lock:
                send_failures[type(e).__name__] += 1
        return s

    check_alive(args.pid)
    rss_before, fds_before = rss_mb(args.pid), open_fds(args.pid)
    print(f"held-uploads: {args.count} x POST /v1/detect, Content-Length {args.size}, first {len(first)} bytes sent, "
          f"{'with' if args.key else 'without'} an API key; server pid {args.pid}: RSS {fmt(rss_before)} MB, "
          f"{fds_before} open files", flush=True)
    t0 = time.monotonic()
    socks: list[socket.socket] = []
    try:
        socks, failures = open_many(args.count, args.batch, opener, "opened")
        open_s = time.monotonic() - t0
        rss_held, fds_held = sample_for(args.pid, args.hold_s)
        answers = poll_answers(socks)
    finally:
        close_all(socks)
    fds_after, waited = wait_fds_back(args.pid, fds_before, args.fd_slack, args.settle_s)
    time.sleep(1.0)
    rss_after = rss_mb(args.pid)
    peak = max(rss_held) if rss_held else None
    result = {
        "check": "held-uploads",
        "count": args.count,
        "size": args.size,
        "first_body_bytes": len(first),
        "api_key_sent": bool(args.key),
        "opened": len(socks),
        "open_failures": dict(failures),
        "send_failures": dict(send_failures),
        "open_s": round(open_s, 2),
        "held_s": args.hold_s,
        "rss_before_mb": rss_before,
        "rss_peak_held_mb": peak,
        "rss_after_mb": rss_after,
        "rss_increase_mb": None if peak is None or rss_before is None else round(peak - rss_before, 1),
        "rss_increase_per_conn_kb": None if peak is None or rss_before is None or not socks
        else round((peak - rss_before) * 1024 / len(socks), 1),
        "rss_after_minus_before_mb": None if rss_after is None or rss_before is None else round(rss_after - rss_before, 1),
        "fds_before": fds_before,
        "fds_peak_held": max(fds_held) if fds_held else None,
        "fds_after": fds_after,
        "fds_settle_s": round(waited, 2),
        "answered": sum(1 for a in answers.values() if a.startswith("HTTP/")),
        "closed_by_server": sum(1 for a in answers.values() if not a.endswith("open")),
        "answers": answer_counts(answers, len(socks)),
        "server_alive": rss_after is not None,
    }
    for k in ("rss_before_mb", "rss_peak_held_mb", "rss_after_mb"):
        if result[k] is not None:
            result[k] = round(result[k], 1)
    print(f"  opened {len(socks)}/{args.count} in {open_s:.1f} s (connect failures: {dict(failures) or 'none'}, "
          f"send failures: {dict(send_failures) or 'none'})")
    print(f"  RSS before {fmt(rss_before)} MB, peak while held {fmt(peak)} MB "
          f"(+{fmt(result['rss_increase_mb'])} MB, {fmt(result['rss_increase_per_conn_kb'])} KB per connection), "
          f"after close {fmt(rss_after)} MB")
    print(f"  open files before {fds_before}, peak held {result['fds_peak_held']}, after {fds_after} "
          f"(settled in {waited:.1f} s)")
    print(f"  answers while held: {result['answers']}")
    return result


def half_open(args: argparse.Namespace) -> dict:
    host, port = host_port(args.url)

    def opener(_: int) -> socket.socket:
        s = socket.create_connection((host, port), timeout=args.timeout)
        try:
            s.sendall(PARTIAL_REQUEST)
        except OSError:
            s.close()
            raise
        return s

    def probe() -> tuple[float, str | None]:
        start = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=args.probe_timeout)
        try:
            conn.request("GET", "/health/live", headers={"Connection": "close", "User-Agent": "dosod-hostile/probe"})
            resp = conn.getresponse()
            resp.read()
            err = None if resp.status == 200 else f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            err = type(e).__name__
        finally:
            conn.close()
        return (time.perf_counter() - start) * 1000, err

    check_alive(args.pid)
    rss_before, fds_before = rss_mb(args.pid), open_fds(args.pid)
    print(f"half-open: {args.count} partial requests held, then {args.probes} probes of GET /health/live; "
          f"server pid {args.pid}: RSS {fmt(rss_before)} MB, {fds_before} open files", flush=True)
    baseline_ms = [probe()[0] for _ in range(min(20, args.probes))]
    socks: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        socks, failures = open_many(args.count, args.batch, opener, "opened")
        open_s = time.monotonic() - t0
        fds_held, rss_held = open_fds(args.pid), rss_mb(args.pid)
        latencies: list[float] = []
        errors: collections.Counter = collections.Counter()
        p0 = time.monotonic()
        for _ in range(args.probes):
            ms, err = probe()
            latencies.append(ms)
            if err:
                errors[err] += 1
        probe_s = time.monotonic() - p0
        fds_after_probes = open_fds(args.pid)
        # keep holding until --hold-s after the first was opened, noting when each one ends
        answers: dict[int, str] = {}
        ended_after: list[float] = []
        while True:
            fresh = poll_answers([socks[i] if i not in answers else _DONE for i in range(len(socks))])
            now = time.monotonic() - t0
            for i, a in fresh.items():
                if i not in answers:
                    answers[i] = a
                    ended_after.append(now)
            if len(answers) == len(socks) or now >= args.hold_s:
                break
            time.sleep(0.25)
        held_for = time.monotonic() - t0
    finally:
        close_all(socks)
    fds_after, waited = wait_fds_back(args.pid, fds_before, args.fd_slack, args.settle_s)
    result = {
        "check": "half-open",
        "count": args.count,
        "opened": len(socks),
        "open_failures": dict(failures),
        "open_s": round(open_s, 2),
        "probes": args.probes,
        "probe_failures": sum(errors.values()),
        "probe_errors": dict(errors),
        "probe_s": round(probe_s, 2),
        "latency_ms": {
            "median": round(percentile(latencies, 50), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2) if latencies else math.nan,
        },
        "baseline_median_ms": round(percentile(baseline_ms, 50), 2),
        "fds_before": fds_before,
        "fds_held": fds_held,
        "fds_after_probes": fds_after_probes,
        "fds_after": fds_after,
        "fds_settle_s": round(waited, 2),
        "rss_before_mb": None if rss_before is None else round(rss_before, 1),
        "rss_held_mb": None if rss_held is None else round(rss_held, 1),
        "held_s_at_poll": round(held_for, 1),
        "answered": sum(1 for a in answers.values() if a.startswith("HTTP/")),
        "closed_by_server": sum(1 for a in answers.values() if not a.endswith("open")),
        "answers": answer_counts(answers, len(socks)),
        "ended_after_s": {"min": round(min(ended_after), 1), "median": round(percentile(ended_after, 50), 1),
                          "max": round(max(ended_after), 1)} if ended_after else None,
        "server_alive": rss_mb(args.pid) is not None,
    }
    lat = result["latency_ms"]
    print(f"  opened {len(socks)}/{args.count} in {open_s:.1f} s (failures: {dict(failures) or 'none'})")
    print(f"  probes: {args.probes} in {probe_s:.1f} s, failures {result['probe_failures']} {dict(errors) or ''}")
    print(f"  latency ms: median {lat['median']}, p90 {lat['p90']}, p99 {lat['p99']}, max {lat['max']} "
          f"(before holding: median {result['baseline_median_ms']})")
    print(f"  open files before {fds_before}, held {fds_held}, after probes {fds_after_probes}, after close {fds_after}")
    print(f"  held connections after {held_for:.1f} s: {result['answers']}; ended after (s, from the first "
          f"opened): {result['ended_after_s']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8080", help="the server's base URL")
    common.add_argument("--pid", type=int, required=True, help="the server's process id (for RSS and open files)")
    common.add_argument("--batch", type=int, default=100, help="connections opened at once, one thread each (default 100)")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds for each connect / send (default 10)")
    common.add_argument("--settle-s", type=float, default=30.0,
                        help="after closing, wait at most this long for the server's open files to drop back")
    common.add_argument("--fd-slack", type=int, default=5, help="open files above the start that count as back")

    held = sub.add_parser("held-uploads", parents=[common], help="stalled uploads: what they cost in RSS")
    held.add_argument("--count", type=int, default=1000)
    held.add_argument("--size", type=int, default=18_000_000, help="declared Content-Length")
    keys = held.add_mutually_exclusive_group()
    keys.add_argument("--key-less", action="store_true", help="send no API key (the default)")
    keys.add_argument("--key", default="", help="send this API key (x-api-key) instead")
    held.add_argument("--hold-s", type=float, default=5.0, help="seconds to sample while all are held (default 5)")

    half = sub.add_parser("half-open", parents=[common], help="partial headers: does the server still answer")
    half.add_argument("--count", type=int, default=2000)
    half.add_argument("--probes", type=int, default=200)
    half.add_argument("--probe-timeout", type=float, default=5.0, help="seconds for each probe (default 5)")
    half.add_argument("--hold-s", type=float, default=15.0,
                      help="hold them this long after the first was opened, to see the server's header timeout "
                           "close them (default 15; the server's default is 10 s)")

    args = parser.parse_args()
    stop_on_signals()
    soft, hard = raise_nofile()
    need = args.count + 64
    if soft < need:
        print(f"warning: open-file limit {soft} (hard {hard}) is below the {need} this needs", file=sys.stderr)
    try:
        result = held_uploads(args) if args.command == "held-uploads" else half_open(args)
    except KeyboardInterrupt:
        sys.exit("interrupted")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
