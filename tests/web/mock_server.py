"""Mock of the `dosod serve` HTTP API for developing and testing the web page without a model.

Owns: serving src/server/page (`/`, `/app.js`, `/style.css`) and fake `POST /v1/detect`,
`GET /v1/vocabularies` and `GET /v1/info` responses with the real server's JSON shapes.
Detections are deterministic (seeded by class name and image size) and spread over a range of
scores, so the page's client-side score filter has something to filter. Errors use the real
shape `{"error": ..., "error_type": ...}`:

- 400 `bad_request`      no `image` field, an unknown field, or a numeric field that is not a number
- 401 `unauthorized`     `--api-key` given and the `x-api-key` header does not match
- 404 `not_found`        unknown vocabulary name or path
- 422 `invalid_request`  an empty class entry (e.g. "person,,dog"), a threshold outside 0..1,
                         or an image whose size cannot be read (PNG, JPEG, WebP, BMP are read)

Usage: python3 tests/web/mock_server.py [--host 127.0.0.1] [--port 8765] [--api-key KEY]
It prints `listening on http://HOST:PORT` (with the real port when --port 0) once ready.
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import sys
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WEB_DIR = Path(__file__).resolve().parents[2] / "src" / "server" / "page"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
VOCABULARIES: dict[str, list[str]] = {
    "warehouse": ["person", "forklift", "pallet", "cardboard box", "safety vest"],
    "street": ["person", "bus", "car", "bicycle", "traffic light", "dog|puppy"],
}
DEFAULT_CLASSES = ["person", "car", "dog"]
MAX_DETECTIONS_LIMIT = 1000
KNOWN_FIELDS = {"classes", "vocabulary", "score_threshold", "iou_threshold", "max_detections"}


class ApiError(Exception):
    """An error answered as `{"error", "error_type"}` with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def image_size(data: bytes) -> tuple[int, int]:
    """Returns (width, height) read from a PNG, JPEG, WebP or BMP header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return width, abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            i += 2 + length
    raise ApiError(422, "invalid_request", "cannot decode image: unsupported or corrupt data")


def parse_classes(text: str) -> list[str]:
    """Splits "a, b|c" into class entries; an empty entry is an error, as in the real server."""
    entries = [part.strip() for part in text.split(",")]
    for index, entry in enumerate(entries, start=1):
        synonyms = [s.strip() for s in entry.split("|")]
        if not entry or any(not s for s in synonyms):
            raise ApiError(422, "invalid_request", f"classes: entry {index} is empty")
    return entries


def number(fields: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """Reads an optional numeric form field and checks its range."""
    if name not in fields or fields[name].strip() == "":
        return default
    try:
        value = float(fields[name])
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a number, got {fields[name]!r}") from None
    if not lo <= value <= hi:
        raise ApiError(422, "invalid_request", f"{name} must be in {lo}..={hi}, got {value}")
    return value


def fake_detections(classes: list[str], width: int, height: int) -> list[dict[str, Any]]:
    """Three boxes per class with scores spread from high to very low, sorted by score."""
    out: list[dict[str, Any]] = []
    for class_id, entry in enumerate(classes):
        label = entry.split("|")[0].strip()
        seed = int.from_bytes(hashlib.sha256(f"{entry}/{width}x{height}".encode()).digest()[:8], "little")
        rng = random.Random(seed)
        for score in (0.93 - 0.11 * class_id, 0.42 - 0.05 * class_id, 0.06):
            bw = rng.uniform(0.12, 0.4) * width
            bh = rng.uniform(0.12, 0.45) * height
            x1 = rng.uniform(0, width - bw)
            y1 = rng.uniform(0, height - bh)
            out.append({
                "label": label,
                "class_id": class_id,
                "score": round(max(0.02, score), 4),
                "box": [round(x1, 1), round(y1, 1), round(x1 + bw, 1), round(y1 + bh, 1)],
            })
    out.sort(key=lambda d: -d["score"])
    return out


class Handler(BaseHTTPRequestHandler):
    """Routes the API and static files."""

    server_version = "dosod-mock/1"
    api_key: str | None = None

    def log_message(self, fmt: str, *args: Any) -> None:  # noqa: D102 (quiet unless asked)
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(fmt, *args)

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def check_key(self) -> None:
        if self.api_key and self.headers.get("x-api-key") != self.api_key:
            raise ApiError(401, "unauthorized", "missing or invalid API key")

    def handle_errors(self, route: Any) -> None:
        try:
            route()
        except ApiError as err:
            self.send_json(err.status, {"error": str(err), "error_type": err.error_type})

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.handle_errors(self.route_get)

    def do_POST(self) -> None:  # noqa: N802
        self.handle_errors(self.route_post)

    def route_get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, ctype = STATIC[path]
            data = (WEB_DIR / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(data)
        elif path == "/v1/vocabularies":
            self.check_key()
            vocabularies = [
                {"name": name, "classes": len(classes), "builtin": name == "street",
                 "hash": hashlib.sha256(",".join(classes).encode()).hexdigest()[:16]}
                for name, classes in VOCABULARIES.items()
            ]
            self.send_json(200, {"vocabularies": vocabularies})
        elif path == "/v1/info":
            self.check_key()
            self.send_json(200, {
                "model": {"name": "mock-dosod", "input_size": [640, 640]},
                "default_vocabulary": {"classes": DEFAULT_CLASSES},
                "limits": {"max_image_bytes": 20 << 20, "max_detections": MAX_DETECTIONS_LIMIT},
                "ort_version": "mock",
                "execution_provider": "cpu",
            })
        else:
            raise ApiError(404, "not_found", f"no route for GET {path}")

    def read_form(self) -> tuple[dict[str, str], bytes | None]:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(400, "bad_request", "expected multipart/form-data")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        image: bytes | None = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "image":
                image = payload
            elif name:
                fields[name] = payload.decode("utf-8", "replace")
        return fields, image

    def route_post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/v1/detect":
            raise ApiError(404, "not_found", f"no route for POST {path}")
        self.check_key()
        started = time.perf_counter()
        fields, image = self.read_form()
        if not image:
            raise ApiError(400, "bad_request", "missing multipart field 'image'")
        unknown = sorted(set(fields) - KNOWN_FIELDS)
        if unknown:
            raise ApiError(400, "bad_request", f"unknown field `{unknown[0]}`")
        score = number(fields, "score_threshold", 0.25, 0.0, 1.0)
        number(fields, "iou_threshold", 0.7, 0.0, 1.0)
        max_det = int(number(fields, "max_detections", 300, 1, MAX_DETECTIONS_LIMIT))
        name: str | None = None
        if fields.get("classes", "").strip():
            classes = parse_classes(fields["classes"])
        elif fields.get("vocabulary", "").strip():
            name = fields["vocabulary"].strip()
            if name not in VOCABULARIES:
                raise ApiError(404, "not_found", f"unknown vocabulary '{name}'")
            classes = VOCABULARIES[name]
        else:
            classes = DEFAULT_CLASSES
        width, height = image_size(image)
        detections = [d for d in fake_detections(classes, width, height) if d["score"] >= score][:max_det]
        total = (time.perf_counter() - started) * 1000
        self.send_json(200, {
            "detections": detections,
            "image": {"width": width, "height": height},
            "vocabulary": {
                "name": name,
                "hash": hashlib.sha256("\n".join(classes).encode()).hexdigest()[:16],
                "classes": [c.split("|")[0].strip() for c in classes],
            },
            "timings_ms": {"queue": 0.0, "decode": 0.0, "preprocess": 0.0, "inference": 0.0,
                           "postprocess": 0.0, "total": round(total, 3)},
        })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this x-api-key on /v1/*")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args()
    Handler.api_key = args.api_key
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.verbose = args.verbose  # type: ignore[attr-defined]
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
