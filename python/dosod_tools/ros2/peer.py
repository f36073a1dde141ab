"""An independent ROS 2 peer on Eclipse Cyclone DDS, driven by dosod's node tests (tests/ros2.rs).

It talks to `dosod ros` the way a ROS 2 camera driver and a perception consumer would: it
publishes `sensor_msgs/Image` / `CompressedImage` on `rt/<topic>`, reads the node's
`vision_msgs/Detection2DArray`, changes the vocabulary through `~/set_vocabulary` and through
the `set_parameters` service, and sends malformed frames. Each subcommand prints one JSON object.

    python -m dosod_tools.ros2.peer --domain 42 frames --image scene.jpg --kinds rgb8,bgr8_padded,mono8,jpeg
    python -m dosod_tools.ros2.peer --domain 42 set-vocabulary --text "pizza, rose" --image scene.jpg --expect "pizza,rose"
    python -m dosod_tools.ros2.peer --domain 42 set-parameters --param score_threshold double 0.3
    python -m dosod_tools.ros2.peer --domain 42 bad --image scene.jpg
    python -m dosod_tools.ros2.peer --domain 42 malformed
    python -m dosod_tools.ros2.peer --domain 42 stream --image scene.jpg --hz 30 --seconds 5 --resize 1280 720
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import time
from pathlib import Path

from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration
from PIL import Image as PilImage

from . import msgs as m

XCDR1 = Policy.DataRepresentation(use_cdrv0_representation=True)
# What camera drivers use (sensor-data QoS) and what the node's outputs and services use.
SENSOR = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1), XCDR1)
RELIABLE = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(10), XCDR1)
_stamps = itertools.count(1)


class Peer:
    """One participant on the node's domain with lazily created writers and readers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dp = DomainParticipant(args.domain)
        self._entities: dict[str, object] = {}

    def _get(self, key: str, make):
        if key not in self._entities:
            entity = make()
            wait_matched(entity, key, self.args.match_timeout)
            self._entities[key] = entity
        return self._entities[key]

    def writer(self, topic: str, kind, qos: Qos) -> DataWriter:
        return self._get("w:" + topic, lambda: DataWriter(self.dp, Topic(self.dp, "rt" + topic, kind, qos=qos), qos=qos))

    def detections(self) -> DataReader:
        topic = self.args.detections_topic
        return self._get("r:" + topic, lambda: DataReader(
            self.dp, Topic(self.dp, "rt" + topic, m.Detection2DArray, qos=RELIABLE), qos=RELIABLE))

    def send_frame(self, kind: str, rgb: PilImage.Image, jpeg: bytes, wall: bool = False):
        """Publishes one frame of `kind` with a fresh stamp (`wall`: the system clock, as a camera
        driver stamps); returns the writer, the message and the stamp."""
        n = next(_stamps)
        stamp = m.Time(sec=1_000 + n, nanosec=n * 1_000 + 7)
        if wall:
            ns = time.time_ns()
            stamp = m.Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        header = m.Header(stamp=stamp, frame_id=f"cam_{kind}")
        if kind in ("jpeg", "png"):
            data = jpeg if kind == "jpeg" else encode(rgb, "PNG")
            msg = m.CompressedImage(header, kind, data)
            w = self.writer(self.args.compressed_topic, m.CompressedImage, SENSOR)
        else:
            msg = raw_image(header, rgb, kind)
            w = self.writer(self.args.image_topic, m.Image, SENSOR)
        w.write(msg)
        return w, msg, stamp

    def round_trip(self, kind: str, rgb: PilImage.Image, jpeg: bytes, timeout: float = 3.0, tries: int = 4):
        """Sends a frame and waits for the detections that carry its stamp (resent on loss)."""
        reader = self.detections()
        for sends in range(1, tries + 1):
            w, msg, stamp = self.send_frame(kind, rgb, jpeg)
            sent = time.perf_counter()
            end = sent + timeout
            while time.perf_counter() < end:
                for det in reader.take(N=16):
                    if det.header.stamp == stamp:
                        latency = (time.perf_counter() - sent) * 1e3
                        return {"kind": kind, "stamp": [stamp.sec, stamp.nanosec], "latency_ms": latency,
                                "sends": sends, **to_json(det)}
                time.sleep(0.002)
        return None


def wait_matched(entity, what: str, timeout: float) -> None:
    status = entity.get_publication_matched_status if isinstance(entity, DataWriter) \
        else entity.get_subscription_matched_status
    end = time.time() + timeout
    while time.time() < end:
        if status().current_count > 0:
            time.sleep(0.2)  # let the other side finish matching too
            return
        time.sleep(0.05)
    raise SystemExit(f"no DDS match for {what} within {timeout} s")


def encode(img: PilImage.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def raw_image(header: m.Header, rgb: PilImage.Image, kind: str) -> m.Image:
    """`rgb8`, `bgr8_padded` (BGR with 5 padding bytes per row) or `mono8` pixels of `rgb`."""
    w, h = rgb.size
    if kind == "rgb8":
        return m.Image(header, h, w, "rgb8", 0, 3 * w, rgb.tobytes())
    if kind == "bgr8_padded":
        r, g, b = rgb.split()
        bgr = PilImage.merge("RGB", (b, g, r)).tobytes()
        step = 3 * w + 5
        rows = b"".join(bgr[y * 3 * w:(y + 1) * 3 * w] + b"\x00" * 5 for y in range(h))
        return m.Image(header, h, w, "bgr8", 0, step, rows)
    if kind == "mono8":
        return m.Image(header, h, w, "mono8", 0, w, rgb.convert("L").tobytes())
    raise SystemExit(f"unknown frame kind {kind}")


def to_json(arr: m.Detection2DArray) -> dict:
    h = arr.header
    return {
        "header": {"stamp": [h.stamp.sec, h.stamp.nanosec], "frame_id": h.frame_id},
        "detections": [{
            "header": {"stamp": [d.header.stamp.sec, d.header.stamp.nanosec], "frame_id": d.header.frame_id},
            "results": len(d.results),
            "class_id": d.results[0].hypothesis.class_id if d.results else None,
            "score": d.results[0].hypothesis.score if d.results else None,
            "orientation_w": d.results[0].pose.pose.orientation.w if d.results else None,
            "center": [d.bbox.center.position.x, d.bbox.center.position.y],
            "theta": d.bbox.center.theta,
            "size": [d.bbox.size_x, d.bbox.size_y],
            "id": d.id,
        } for d in arr.detections],
    }


def load(path: str, size: list[int] | None = None) -> tuple[PilImage.Image, bytes]:
    """The image as RGB pixels and JPEG bytes, resized to `size` (W, H) when given."""
    data = Path(path).read_bytes()
    img = PilImage.open(io.BytesIO(data)).convert("RGB")
    if size:
        img = img.resize(tuple(size), PilImage.BILINEAR)
        data = encode(img, "JPEG")
    return img, data


def cmd_stream(peer: Peer, a: argparse.Namespace) -> dict:
    """A camera at `--hz` for `--seconds`: how many frames got detections, and how fast."""
    rgb, jpeg = load(a.image, a.resize)
    reader = peer.detections()
    sent_at: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    writes: list[float] = []
    period = 1.0 / a.hz
    start = time.perf_counter()
    next_at = start
    while time.perf_counter() - start < a.seconds:
        t0 = time.perf_counter()
        _, _, stamp = peer.send_frame(a.kind, rgb, jpeg, wall=True)
        sent_at[(stamp.sec, stamp.nanosec)] = t0
        writes.append((time.perf_counter() - t0) * 1e3)
        next_at += period
        while True:
            for det in reader.take(N=16):
                t = sent_at.get((det.header.stamp.sec, det.header.stamp.nanosec))
                if t is not None:
                    latencies.append((time.perf_counter() - t) * 1e3)
            if time.perf_counter() >= next_at:
                break
            time.sleep(0.001)
    end = time.perf_counter() + 1.0  # answers to the last frames
    while time.perf_counter() < end:
        for det in reader.take(N=16):
            t = sent_at.get((det.header.stamp.sec, det.header.stamp.nanosec))
            if t is not None:
                latencies.append((time.perf_counter() - t) * 1e3)
        time.sleep(0.001)
    def pct(v: list[float]) -> dict:
        v = sorted(v)
        return {q: v[round((len(v) - 1) * f)] if v else None for q, f in (("p50", 0.5), ("p90", 0.9), ("max", 1.0))}
    return {"size": list(rgb.size), "kind": a.kind, "hz": a.hz, "seconds": a.seconds, "sent": len(sent_at),
            "answered": len(latencies), "answered_per_s": len(latencies) / a.seconds,
            "write_ms": pct(writes), "round_trip_ms": pct(latencies)}


def cmd_frames(peer: Peer, a: argparse.Namespace) -> dict:
    rgb, jpeg = load(a.image)
    if a.png_out:
        rgb.save(a.png_out)
    if a.mono_png_out:
        rgb.convert("L").save(a.mono_png_out)
    if a.expect_none:
        reader = peer.detections()  # matched before the frame goes out
        peer.send_frame(a.kinds.split(",")[0], rgb, jpeg)
        end = time.time() + a.expect_none
        got = []
        while time.time() < end:
            got += [to_json(d) for d in reader.take(N=16)]
            time.sleep(0.05)
        return {"received": got}
    annotated = None
    if a.annotated_topic:
        qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(100), XCDR1)
        annotated = peer._get("r:" + a.annotated_topic, lambda: DataReader(
            peer.dp, Topic(peer.dp, "rt" + a.annotated_topic, m.Image, qos=qos), qos=qos))
    results = []
    for kind in a.kinds.split(","):
        for _ in range(a.count):
            r = peer.round_trip(kind, rgb, jpeg)
            if r is None:
                raise SystemExit(f"no detections came back for a {kind} frame")
            results.append(r)
    out = {"results": results}
    if annotated is not None:
        out["annotated"] = annotated_summary(annotated, results[0], rgb)
    return out


def annotated_summary(reader: DataReader, first: dict, rgb: PilImage.Image) -> dict:
    """The annotated image that carries the first frame's stamp, and how many pixels differ from it."""
    end = time.time() + 5
    while time.time() < end:
        for img in reader.take(N=100):
            if [img.header.stamp.sec, img.header.stamp.nanosec] == first["stamp"]:
                sent = rgb.tobytes()
                data = bytes(img.data)
                changed = sum(1 for i in range(0, min(len(sent), len(data)), 3) if sent[i:i + 3] != data[i:i + 3])
                return {"width": img.width, "height": img.height, "encoding": img.encoding, "step": img.step,
                        "bytes": len(data), "frame_id": img.header.frame_id, "changed_pixels": changed}
        time.sleep(0.02)
    raise SystemExit("no annotated image came back")


def until_labels(peer: Peer, a: argparse.Namespace, expect: set[str]) -> dict:
    """Sends frames until every label in the reply is one of `expect` (the change took effect)."""
    rgb, jpeg = load(a.image)
    end = time.time() + 15
    frames = 0
    while time.time() < end:
        r = peer.round_trip("rgb8", rgb, jpeg)
        frames += 1
        if r and r["detections"] and {d["class_id"] for d in r["detections"]} <= expect:
            return {"frames_until_effect": frames, **r}
    raise SystemExit(f"labels never became a subset of {sorted(expect)}")


def cmd_set_vocabulary(peer: Peer, a: argparse.Namespace) -> dict:
    peer.writer(a.vocabulary_topic, m.String, RELIABLE).write(m.String(a.text))
    if not a.image:
        time.sleep(0.5)
        return {}
    return until_labels(peer, a, set(a.expect.split(",")))


def cmd_set_parameters(peer: Peer, a: argparse.Namespace) -> dict:
    node = a.node
    params = [m.parameter(name, kind, json.loads(value)) for name, kind, value in a.param]
    request_qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(1), XCDR1)
    req = peer._get("rq", lambda: DataWriter(peer.dp, Topic(
        peer.dp, f"rq{node}/set_parametersRequest", m.SetParametersRequest, qos=request_qos), qos=request_qos))
    rep = peer._get("rr", lambda: DataReader(peer.dp, Topic(
        peer.dp, f"rr{node}/set_parametersReply", m.SetParametersResponse, qos=request_qos), qos=request_qos))
    reply = None
    for _ in range(3):  # setting a parameter twice is harmless; a lost request is retried
        req.write(m.SetParametersRequest(params))
        try:
            reply = rep.take_one(timeout=duration(seconds=5))
            break
        except Exception:  # cyclonedds raises on timeout
            continue
    if reply is None:
        raise SystemExit("no reply from set_parameters")
    out = {"results": [[r.successful, r.reason] for r in reply.results]}
    if a.image:
        out["after"] = until_labels(peer, a, set(a.expect.split(",")))
    return out


def cmd_bad(peer: Peer, a: argparse.Namespace) -> dict:
    """Malformed frames of every kind the node must count and skip, then a good one."""
    rgb, jpeg = load(a.image)
    w, h = rgb.size
    # one good frame on each topic first, so both of the node's readers have matched ours
    warm_up = [peer.round_trip(kind, rgb, jpeg) for kind in ("rgb8", "jpeg")]
    hd = m.Header(m.Time(1, 2), "bad")
    raw = [
        ("encoding", m.Image(hd, h, w, "yuv422", 0, 2 * w, bytes(2 * w * h))),
        ("encoding", m.Image(hd, h, w, "16UC1", 0, 2 * w, bytes(2 * w * h))),
        ("empty", m.Image(hd, 0, 0, "rgb8", 0, 0, b"")),
        ("size", m.Image(hd, h, w, "rgb8", 0, 3 * w - 1, bytes((3 * w - 1) * h))),  # step too short
        ("size", m.Image(hd, h, w, "rgb8", 0, 3 * w, bytes(3 * w * h - 1))),  # data one byte short
        ("size", m.Image(hd, h, w, "mono8", 0, w, bytes(w * (h + 1)))),  # one row too many
        ("too_large", m.Image(hd, 100_000, 100_000, "mono8", 0, 100_000, bytes(64))),  # claims 10 GP
        ("too_large", m.Image(hd, a.large[1], a.large[0], "mono8", 0, a.large[0], bytes(a.large[0] * a.large[1]))),
    ]
    compressed = [
        ("decode", m.CompressedImage(hd, "jpeg", b"\xff\xd8\xff\xe0 not really a jpeg")),
        ("decode", m.CompressedImage(hd, "png", encode(rgb, "PNG")[:200])),
        ("decode", m.CompressedImage(hd, "jpeg", b"")),
    ]
    sent: dict[str, int] = {}
    for kind, msg in raw:
        peer.writer(a.image_topic, m.Image, SENSOR).write(msg)
        sent[kind] = sent.get(kind, 0) + 1
        time.sleep(0.3)
    for kind, msg in compressed:
        peer.writer(a.compressed_topic, m.CompressedImage, SENSOR).write(msg)
        sent[kind] = sent.get(kind, 0) + 1
        time.sleep(0.3)
    good = peer.round_trip("rgb8", rgb, jpeg)
    return {"sent": sent, "warm_up": warm_up, "good": good}


def cmd_malformed(peer: Peer, a: argparse.Namespace) -> dict:
    """An `Image_` sample holding only a header: the node must fail to decode it and go on."""
    qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(1), XCDR1)
    w = peer._get("bad", lambda: DataWriter(peer.dp, Topic(peer.dp, "rt" + a.image_topic, m.HeaderOnlyImage, qos=qos), qos=qos))
    w.write(m.HeaderOnlyImage(m.Header(m.Time(3, 4), "truncated")))
    time.sleep(1.0)
    return {"sent": {"malformed": 1}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", type=int, required=True)
    p.add_argument("--node", default="/dosod")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--compressed-topic", default="/camera/image_raw/compressed")
    p.add_argument("--detections-topic", default="/dosod/detections")
    p.add_argument("--vocabulary-topic", default="/dosod/set_vocabulary")
    p.add_argument("--match-timeout", type=float, default=15.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frames")
    f.add_argument("--image", required=True)
    f.add_argument("--kinds", default="rgb8")
    f.add_argument("--count", type=int, default=1)
    f.add_argument("--png-out")
    f.add_argument("--mono-png-out", help="save the mono8 frame's pixels here")
    f.add_argument("--annotated-topic", help="also read the annotated image of the first frame here")
    f.add_argument("--expect-none", type=float, default=0.0,
                   help="send one frame and report what arrives within this many seconds")
    st = sub.add_parser("stream")
    st.add_argument("--image", required=True)
    st.add_argument("--resize", type=int, nargs=2, metavar=("W", "H"))
    st.add_argument("--kind", default="rgb8")
    st.add_argument("--hz", type=float, default=30.0)
    st.add_argument("--seconds", type=float, default=5.0)
    v = sub.add_parser("set-vocabulary")
    v.add_argument("--text", required=True)
    v.add_argument("--image")
    v.add_argument("--expect", default="")
    s = sub.add_parser("set-parameters")
    s.add_argument("--param", nargs=3, action="append", required=True, metavar=("NAME", "KIND", "JSON"))
    s.add_argument("--image")
    s.add_argument("--expect", default="")
    b = sub.add_parser("bad")
    b.add_argument("--image", required=True)
    b.add_argument("--large", type=int, nargs=2, default=[700, 400], metavar=("W", "H"),
                   help="a valid mono8 frame above the node's --max-pixels")
    sub.add_parser("malformed")
    a = p.parse_args()
    peer = Peer(a)
    run = {"frames": cmd_frames, "set-vocabulary": cmd_set_vocabulary, "set-parameters": cmd_set_parameters,
           "bad": cmd_bad, "malformed": cmd_malformed, "stream": cmd_stream}[a.cmd]
    print(json.dumps(run(peer, a)), flush=True)


if __name__ == "__main__":
    main()
