"""The pure helpers of the stdlib load checks (dosod_tools.checks.hostile / soak), no server."""

from __future__ import annotations

import math
import socket
import xml.etree.ElementTree as ET

import pytest

from dosod_tools.checks.hostile import answer_counts, percentile, poll_answers
from dosod_tools.checks.soak import least_squares_slope, multipart, nice_ticks, slopes, svg_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_least_squares_slope() -> None:
    assert least_squares_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert least_squares_slope([0, 1, 2, 3], [5, 5, 5, 5]) == pytest.approx(0.0)
    # noisy points: the textbook fit of (1,2),(2,3),(3,5),(4,4) is 0.8
    assert least_squares_slope([1, 2, 3, 4], [2, 3, 5, 4]) == pytest.approx(0.8)
    assert math.isnan(least_squares_slope([1], [1]))
    assert math.isnan(least_squares_slope([2, 2, 2], [1, 2, 3]))


def test_slopes_per_hour_and_second_half() -> None:
    # 10 MB/h for the first half hour, then flat
    samples = [{"minutes": m, "rss_mb": 100 + min(m, 30) / 6} for m in range(0, 61, 5)]
    got = slopes(samples, "rss_mb")
    assert got["second_half"] == pytest.approx(0.0, abs=1e-9)
    assert 0 < got["all"] < 10
    assert got["points"] == 13 and got["second_half_points"] == 7
    assert slopes([{"minutes": 0, "rss_mb": None}], "rss_mb")["all"] is None


def test_percentile_interpolates_like_numpy() -> None:
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 5.0
    assert percentile(xs, 90) == pytest.approx(4.6)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_answer_counts() -> None:
    assert answer_counts({0: "HTTP/1.1 401, closed", 2: "closed", 3: "HTTP/1.1 401, closed"}, 5) == {
        "HTTP/1.1 401, closed": 2, "no answer": 2, "closed": 1}


def test_poll_answers_on_socket_pairs() -> None:
    pairs = [socket.socketpair() for _ in range(4)]
    ours = [a for a, _ in pairs]
    pairs[0][1].sendall(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
    pairs[0][1].close()
    pairs[1][1].sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    pairs[2][1].close()
    try:
        assert poll_answers(ours) == {0: "HTTP/1.1 401, closed", 1: "HTTP/1.1 408, open", 2: "closed"}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_nice_ticks_cover_the_range() -> None:
    ticks = nice_ticks(12.3, 97.1)
    assert ticks[0] <= 12.3 and ticks[-1] >= 97.1
    assert ticks == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.0, 2.0) == [0, 0.5, 1.0, 1.5, 2.0]
    assert len(nice_ticks(5.0, 5.0)) >= 2


def test_svg_is_valid_xml_with_axes_and_title() -> None:
    xs = [0.0, 0.5, 1.0, 1.5, 2.0]
    text = svg_chart("RSS & fds <soak>", xs, ("RSS MB", [100.0, 101.5, 101.0, None, 102.0], "#1f77b4"),
                     ("open files", [20, 25, 22, 21, 20], "#d62728"))
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "RSS & fds <soak>" in texts and "minutes" in texts and "RSS MB" in texts and "open files" in texts
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == 4  # the None is skipped
    # degenerate input still gives a document
    ET.fromstring(svg_chart("empty", [], ("RSS MB", [], "black")))
    ET.fromstring(svg_chart("one", [0.0], ("RSS MB", [3.0], "black")))


def test_multipart_body() -> None:
    body, ctype = multipart([("image", b"\xff\xd8abc", "a.jpg", "image/jpeg"), ("classes", "person,bus", None, None)])
    boundary = ctype.split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8abc\r\n' in body
    assert b'name="classes"\r\n\r\nperson,bus\r\n' in body
