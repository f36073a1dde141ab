#!/usr/bin/python3
"""A local RTSP "camera" for the stream-daemon tests: serves an H.264 .mp4 in an endless loop.

This file owns the test RTSP server. Run it with the system Python (python3-gi and GStreamer's
GstRtspServer; scripts/stream_test_deps.sh installs them):

    /usr/bin/python3 tests/streams/rtsp_server.py --port 8554 --path /scenes \
        --file tests/fixtures/streams/scenes.mp4 [--rate 3]

It prints one line `ready rtsp://127.0.0.1:PORT/PATH` on stdout (flushed) once it accepts
clients (`--port 0` picks a free port, and the line names it), logs to stderr, and exits with
status 0 on SIGTERM or SIGINT. GstRtspServer binds with SO_REUSEADDR, so it can be restarted on
the same port at once after being stopped or killed.

How it works, like a live camera:

* a *player* pipeline (filesrc ! qtdemux ! h264parse ! appsink) reads the clip's H.264 access
  units and loops it gaplessly with segment seeks; a pacing thread takes frame n from it at clock
  time start + n / (fps * rate) and stamps it with exactly that time. It runs from start-up
  whether or not anybody watches, so a client joins wherever the loop is;
* one *shared* RTSP media (appsrc ! rtph264pay) per mount: every client of the mount gets the
  same RTP stream. The pacer pushes each access unit into that appsrc. Nothing is decoded or
  re-encoded (the clip is H.264 without B-frames, an IDR every second with SPS/PPS in front), and
  a newly started media receives data from the next IDR on, so clients never see broken GOPs;
* `--rate N` paces the file N times faster than real time: `--rate 3` turns the 10 fps clip into
  a 30 fps stream, e.g. to test a newest-frame policy. The stream then says 30 fps everywhere:
  RTP timestamps, caps, and the SPS timing info (the server first remuxes the file into a
  temporary copy with ffmpeg's h264_metadata filter; frames are untouched).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

MEDIA_LAUNCH = (
    "( appsrc name=src is-live=true format=time max-buffers=64 leaky-type=downstream"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


def log(msg: str) -> None:
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


class LoopingPlayer:
    """Reads an .mp4's H.264 track in a loop and, paced by the clock at the file's frame rate
    times `rate`, hands each access unit to the appsrc of the current RTSP media, if any.

    The demuxer pipeline runs unsynchronised into a short appsink queue; a pacing thread pulls
    frame n at clock time start + n * frame_duration and stamps it with exactly that time (in the
    media's running time). Counting frames rather than using the demuxer's timestamps keeps the
    cadence exact across loops (a segment-seek loop alone loses the last frame's duration)."""

    def __init__(self, path: Path, rate: float) -> None:
        self.rate = rate
        self.pipeline = Gst.parse_launch(
            "filesrc name=file ! qtdemux ! h264parse config-interval=-1"
            " ! video/x-h264,stream-format=byte-stream,alignment=au"
            " ! appsink name=sink sync=false max-buffers=2 drop=false"
        )
        self.pipeline.get_by_name("file").set_property("location", str(path))
        self.sink: GstApp.AppSink = self.pipeline.get_by_name("sink")
        self.clock = Gst.SystemClock.obtain()  # GstRtspServer's media pipelines use it too
        self.caps: Gst.Caps | None = None  # set by start()
        self.frame_ns = 0
        self._lock = threading.Lock()
        self._appsrc: GstApp.AppSrc | None = None
        self._need_keyframe = True
        self._running = False
        self._thread = threading.Thread(target=self._pace, name="pacer", daemon=True)
        self.failed: str | None = None
        self.on_fatal: Callable[[], None] = lambda: None  # called (from any thread) on a fatal error
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        """Prerolls, seeks to a looping segment and plays. Raises on a file it cannot play."""
        self.pipeline.set_state(Gst.State.PAUSED)
        result, _, _ = self.pipeline.get_state(10 * Gst.SECOND)
        if result == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError(self.failed or "the player pipeline did not preroll")
        caps = self.sink.get_static_pad("sink").get_current_caps()
        if caps is None:
            raise RuntimeError("no H.264 caps after preroll")
        ok, num, den = caps.get_structure(0).get_fraction("framerate")
        if not ok or num <= 0:
            raise RuntimeError(f"the H.264 track has no constant frame rate: {caps.to_string()}")
        self.frame_ns = round(Gst.SECOND * den / (num * self.rate))
        self.caps = caps.copy()
        if self.rate != 1.0:  # announce the rate the stream really has
            fps = Fraction(num, den) * Fraction(self.rate).limit_denominator(1000)
            new = f"framerate=(fraction){fps.numerator}/{fps.denominator}"
            self.caps = Gst.Caps.from_string(re.sub(r"framerate=\(fraction\)\d+/\d+", new, self.caps.to_string()))
        self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        self.pipeline.set_state(Gst.State.PLAYING)
        self._running = True
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.pipeline.set_state(Gst.State.NULL)

    def attach(self, appsrc: GstApp.AppSrc) -> None:
        """Feed `appsrc` (instead of any other) from the next keyframe on."""
        with self._lock:
            self._appsrc = appsrc
            self._need_keyframe = True

    def detach(self, appsrc: GstApp.AppSrc) -> None:
        """Stop feeding `appsrc`, if it is the one being fed."""
        with self._lock:
            if self._appsrc is appsrc:
                self._appsrc = None

    def _seek(self, flags: Gst.SeekFlags) -> None:
        if not self.pipeline.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1):
            log("seek to the start failed")  # the loop would end: say why

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.SEGMENT_DONE:  # loop: non-flushing segment seek, no gap
            self._seek(Gst.SeekFlags.SEGMENT)
        elif msg.type == Gst.MessageType.EOS:  # not expected with segment seeks; restart anyway
            self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            self.failed = f"{err.message} ({dbg})"
            log(f"player error: {self.failed}")
            self.on_fatal()

    def _pace(self) -> None:
        try:
            due = self.clock.get_time()
            while self._running:
                sample = self.sink.try_pull_sample(Gst.SECOND // 2)
                if sample is None:
                    continue
                now = self.clock.get_time()
                if now < due:
                    time.sleep((due - now) / Gst.SECOND)
                elif now - due > Gst.SECOND:  # stalled (machine busy): resynchronise, don't burst
                    due = now
                self._push(sample.get_buffer(), due)
                due += self.frame_ns
        except Exception as e:  # a dead pacer would leave a server that never sends a frame
            self.failed = f"pacer: {e!r}"
            log(self.failed)
            self.on_fatal()

    def _push(self, buf: Gst.Buffer, due: int) -> None:
        with self._lock:
            appsrc = self._appsrc
            if appsrc is None:
                return
            _, state, _ = appsrc.get_state(0)
            if state != Gst.State.PLAYING:  # media prepared but not playing yet
                self._need_keyframe = True
                return
            if self._need_keyframe:
                if buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
                    return
                self._need_keyframe = False
            out = buf.copy()  # shares the memory; own metadata
            out.pts = out.dts = max(0, due - appsrc.get_base_time())  # the media's running time
            out.duration = self.frame_ns
            appsrc.emit("push-buffer", out)


class Server:
    """GstRtspServer with one shared mount fed by a LoopingPlayer."""

    def __init__(self, host: str, port: int, mount: str, player: LoopingPlayer) -> None:
        self.player = player
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(host)
        self.server.set_service(str(port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(MEDIA_LAUNCH)
        factory.set_shared(True)
        factory.connect("media-configure", self._on_media_configure)
        self.server.get_mount_points().add_factory(mount, factory)
        self.source_id = 0

    def attach(self) -> int:
        """Binds and listens; returns the port. Raises if the address cannot be bound."""
        self.source_id = self.server.attach(None)
        if self.source_id == 0:
            where = f"{self.server.get_address()}:{self.server.get_service()}"
            raise RuntimeError(f"cannot listen on {where}")
        return self.server.get_bound_port()

    def detach(self) -> None:
        if self.source_id:
            GLib.source_remove(self.source_id)
            self.source_id = 0

    def _on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        """A new shared media (first client after none): feed its appsrc until it is unprepared."""
        appsrc = media.get_element().get_by_name_recurse_up("src")
        appsrc.set_property("caps", self.player.caps)
        media.connect("unprepared", lambda _m: self.player.detach(appsrc))
        self.player.attach(appsrc)
        log("media configured")


def retimed_copy(path: Path, rate: float, out_dir: Path) -> Path:
    """A copy of `path` whose H.264 VUI timing says `rate` times its frame rate (ffmpeg remux with
    the h264_metadata filter; frames untouched), so that decoders that trust the SPS (ffmpeg's
    default constant-frame-rate output does) do not drop the extra frames of a faster stream."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=r_frame_rate",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tick = 2 * Fraction(probe.stdout.strip()) * Fraction(rate).limit_denominator(1000)  # fields/s
    out = out_dir / f"{path.stem}.x{rate:g}.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-bsf:v", f"h264_metadata=tick_rate={tick.numerator}/{tick.denominator}", str(out)],
        check=True,
    )  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, required=True, help="H.264 .mp4 to serve (no B-frames)")
    ap.add_argument("--port", type=int, default=8554, help="TCP port; 0 picks a free one")
    ap.add_argument("--path", default="/scenes", help="mount point, e.g. /scenes")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument(
        "--rate", type=float, default=1.0,
        help="playback speed: 3 makes 30 fps of a 10 fps file (needs ffmpeg/ffprobe to retime the SPS)",
    )  # fmt: skip
    args = ap.parse_args()
    if not args.file.is_file():
        ap.error(f"{args.file}: no such file")
    if args.rate <= 0:
        ap.error("--rate must be > 0")
    mount = "/" + args.path.strip("/")

    Gst.init(None)
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda: (loop.quit(), GLib.SOURCE_REMOVE)[1])

    # --rate: a retimed copy in a temporary folder (left behind only if the server is SIGKILLed)
    tmp = tempfile.TemporaryDirectory(prefix="rtsp_server.") if args.rate != 1.0 else None
    source = args.file
    if tmp is not None:
        try:
            source = retimed_copy(args.file, args.rate, Path(tmp.name))
        except (OSError, subprocess.CalledProcessError) as e:
            log(f"cannot retime {args.file} for --rate {args.rate:g}: {e}")
            tmp.cleanup()
            return 1
    player = LoopingPlayer(source, args.rate)
    player.on_fatal = lambda: GLib.idle_add(loop.quit)
    server = Server(args.host, args.port, mount, player)
    try:
        player.start()
        port = server.attach()
    except RuntimeError as e:
        log(str(e))
        player.stop()
        if tmp is not None:
            tmp.cleanup()
        return 1
    print(f"ready rtsp://{args.host}:{port}{mount}", flush=True)
    log(f"serving {args.file} at rate {args.rate:g}")
    loop.run()
    server.detach()
    player.stop()
    if tmp is not None:
        tmp.cleanup()
    if player.failed:
        log(f"failed: {player.failed}")
        return 1
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
