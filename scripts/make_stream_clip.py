#!/usr/bin/env python3
"""Makes the stream-daemon test clip: tests/fixtures/streams/scenes.mp4 and scenes.json.

This file owns the clip's recipe. The clip shows large colour emoji of *seen* demo classes
(configs/demo/classes.json; glyphs from scripts/emoji_data.py, so they look like the training
data) gliding over a soft gradient, in three 4 s segments with different objects:

* 640x360, 10 fps, 12 s (120 frames); H.264 main profile without B-frames, yuv420p (BT.601,
  limited range, tagged), an IDR frame every 10 frames (1 s) and at each segment start;
* each segment holds 3-4 objects, long side 90-135 px, no rotation; each moves from a start to an
  end point with an ease-in-out (cosine) profile, at most 6 px per frame; objects stay at least
  8 px inside the frame and never overlap (their boxes keep a 12 px gap in every frame);
* every class is in the demo's default vocabulary, so a daemon with no custom vocabulary can
  find them all.

scenes.json lists the segments (start/end time and frame, classes present, and every object's
tight box [x1, y1, x2, y2] in pixels, alpha > 0.5, for each frame of its segment) and the sorted
names of all classes. Frame i is shown at t = i / fps seconds. Everything comes from --seed, and
ffmpeg runs with one thread and -bitexact, so a rerun on the same ffmpeg/x264 gives the same
bytes. The clip is committed; rerun only to change it (needs `ffmpeg` and fonts-noto-color-emoji):

    .venv/bin/python scripts/make_stream_clip.py                        # writes the fixtures
    .venv/bin/python scripts/make_stream_clip.py --preview-dir /tmp     # + first frame per segment
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emoji_data import ROOT, EmojiClass, load_classes, render_glyphs  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 10
SEGMENT_FRAMES = 40  # 4 s
KEYFRAME_INTERVAL = 10  # 1 s
SEGMENTS: tuple[tuple[str, ...], ...] = (
    ("dog face", "cat face", "duck"),
    ("pizza", "red apple", "soft ice cream", "rose"),
    ("car", "bus", "violin", "light bulb"),
)
LONG_SIDE = (90, 135)  # px, uniform per object
TRAVEL = (70, 150)  # px from start to end point; ease-in-out => max speed pi/2 * 150/39 = 6 px/frame
EDGE_MARGIN = 8  # px between any object and the frame border
GAP = 12  # px between the boxes of any two objects of a segment, in every frame
OUT_DIR = ROOT / "tests/fixtures/streams"


@dataclass
class Track:
    """One object of a segment: its class, its glyph and its top-left position per frame."""

    cls: EmojiClass
    glyph: Image.Image  # RGBA, resized
    box: tuple[int, int, int, int]  # alpha > 0.5 box inside the glyph image
    positions: np.ndarray  # [F, 2] int top-left (x, y) of the glyph image

    def boxes(self) -> np.ndarray:
        """[F, 4] x1, y1, x2, y2 of the visible pixels in the frame (x2, y2 exclusive)."""
        x1, y1, x2, y2 = self.box
        return np.concatenate([self.positions + (x1, y1), self.positions + (x2, y2)], axis=1)


def sized_glyph(glyph: Image.Image, long_side: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The glyph resized to `long_side` (aspect kept) and its alpha > 0.5 box."""
    scale = long_side / max(glyph.size)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    img = glyph.resize(size, Image.Resampling.LANCZOS)
    alpha = np.asarray(img.getchannel("A")) > 127
    ys, xs = np.nonzero(alpha)
    return img, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def ease(frames: int) -> np.ndarray:
    """Ease-in-out fraction 0..1 for each frame (cosine profile)."""
    u = np.arange(frames) / (frames - 1)
    return (1.0 - np.cos(math.pi * u)) / 2.0


def plan_segment(
    rng: np.random.Generator, classes: list[EmojiClass], glyphs: list[Image.Image], tries: int = 20000
) -> list[Track]:
    """Sizes and paths for the classes of one segment, resampled until nothing overlaps."""
    sized = [sized_glyph(glyphs[c.id], int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1))) for c in classes]
    frac = ease(SEGMENT_FRAMES)[:, None]
    for _ in range(tries):
        tracks = []
        for cls, (img, box) in zip(classes, sized):
            bw, bh = box[2] - box[0], box[3] - box[1]
            lo = np.array([EDGE_MARGIN - box[0], EDGE_MARGIN - box[1]], float)
            hi = np.array([WIDTH - EDGE_MARGIN - bw - box[0], HEIGHT - EDGE_MARGIN - bh - box[1]], float)
            start = rng.uniform(lo, hi)
            angle = rng.uniform(0, 2 * math.pi)
            end = start + rng.uniform(*TRAVEL) * np.array([math.cos(angle), math.sin(angle)])
            if np.any(end < lo) or np.any(end > hi):
                break
            positions = np.rint(start + (end - start) * frac).astype(int)
            tracks.append(Track(cls, img, box, positions))
        else:
            if not any(_overlap(a, b) for i, a in enumerate(tracks) for b in tracks[i + 1 :]):
                return tracks
    raise RuntimeError(f"no non-overlapping layout for {[c.name for c in classes]} in {tries} tries")


def _overlap(a: Track, b: Track) -> bool:
    """Whether the boxes of two tracks come closer than GAP in any frame."""
    ba, bb = a.boxes(), b.boxes()
    apart_x = (ba[:, 2] + GAP <= bb[:, 0]) | (bb[:, 2] + GAP <= ba[:, 0])
    apart_y = (ba[:, 3] + GAP <= bb[:, 1]) | (bb[:, 3] + GAP <= ba[:, 1])
    return bool(np.any(~(apart_x | apart_y)))


def background(rng: np.random.Generator) -> Image.Image:
    """A soft diagonal gradient between two light colours, RGBA."""
    c1, c2 = rng.uniform(150, 245, 3), rng.uniform(150, 245, 3)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = x * math.cos(a) + y * math.sin(a)
    t = (t - t.min()) / (t.max() - t.min())
    rgb = c1 + (c2 - c1) * t[..., None]
    return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB").convert("RGBA")


def render(bg: Image.Image, tracks: list[Track], frame: int) -> Image.Image:
    """One RGB frame of a segment."""
    img = bg.copy()
    for t in tracks:
        x, y = t.positions[frame]
        img.alpha_composite(t.glyph, (int(x), int(y)))
    return img.convert("RGB")


def ffmpeg_command(out: Path) -> list[str]:
    """Raw RGB frames on stdin -> H.264 mp4, settings pinned."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
        "-an", "-c:v", "libx264", "-preset", "medium", "-profile:v", "main", "-crf", "20",
        "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(KEYFRAME_INTERVAL),
        "-keyint_min", str(KEYFRAME_INTERVAL), "-sc_threshold", "0",
        "-force_key_frames", f"expr:eq(mod(n,{KEYFRAME_INTERVAL}),0)",
        "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
        "-color_range", "tv", "-threads", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where scenes.mp4 and scenes.json go")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--preview-dir", type=Path, help="also write each segment's first frame as PNG here")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg not found: scripts/stream_test_deps.sh installs it")

    classes, _ = load_classes()
    by_name = {c.name: c for c in classes}
    for name in (n for seg in SEGMENTS for n in seg):
        if by_name[name].split != "seen":
            raise SystemExit(f"{name!r} is not a seen class")
    glyphs = render_glyphs(classes)
    rng = np.random.default_rng(args.seed)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    mp4, meta = args.out_dir / "scenes.mp4", args.out_dir / "scenes.json"
    proc = subprocess.Popen(ffmpeg_command(mp4), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    segments = []
    for s, names in enumerate(SEGMENTS):
        tracks = plan_segment(rng, [by_name[n] for n in names], glyphs)
        bg = background(rng)
        for f in range(SEGMENT_FRAMES):
            frame = render(bg, tracks, f)
            proc.stdin.write(frame.tobytes())
            if f == 0 and args.preview_dir is not None:
                args.preview_dir.mkdir(parents=True, exist_ok=True)
                frame.save(args.preview_dir / f"scenes_segment{s}.png")
        first = s * SEGMENT_FRAMES
        segments.append({
            "index": s,
            "start_s": first / FPS,
            "end_s": (first + SEGMENT_FRAMES) / FPS,
            "first_frame": first,
            "last_frame": first + SEGMENT_FRAMES - 1,
            "classes": sorted(names),
            "objects": [
                {"class": t.cls.name, "class_id": t.cls.id, "boxes": t.boxes().tolist()} for t in tracks
            ],
        })  # fmt: skip
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed with status {proc.returncode}")

    frames = len(SEGMENTS) * SEGMENT_FRAMES
    doc = {
        "description": "Test clip of the stream daemon, made by scripts/make_stream_clip.py; "
        "boxes are [x1, y1, x2, y2] pixels (x2, y2 exclusive) of each frame of the segment; "
        "frame i is at i / fps seconds.",
        "file": mp4.name,
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "frames": frames,
        "duration_s": frames / FPS,
        "keyframe_interval_s": KEYFRAME_INTERVAL / FPS,
        "seed": args.seed,
        "classes": sorted({n for seg in SEGMENTS for n in seg}),
        "segments": segments,
    }
    text = json.dumps(doc, indent=2)
    text = re.sub(r"\[\s+(-?\d+),\s+(-?\d+),\s+(-?\d+),\s+(-?\d+)\s+\]", r"[\1, \2, \3, \4]", text)
    meta.write_text(text + "\n", encoding="utf-8")
    print(f"{mp4}: {mp4.stat().st_size} bytes, {frames} frames; {meta}")


if __name__ == "__main__":
    main()
