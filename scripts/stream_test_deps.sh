#!/usr/bin/env bash
# System packages for the stream-daemon integration tests (tests/streams/, tests/fixtures/streams/).
#
# Installs, with apt, only the packages that are missing, prints what it installed and leaves no
# MQTT broker running as a system service (the tests start their own on their own port).
# Idempotent: a second run installs nothing. Needs root (or sudo) and a Debian/Ubuntu apt.
#
#   sudo scripts/stream_test_deps.sh
#
# Why each package is here:
#   ffmpeg                      the RTSP / file client of the tests, and the encoder of
#                               dosod_tools.fixtures.make_stream_clip (libx264)
#   mosquitto                   the MQTT broker the tests start (`mosquitto -c tests/streams/mosquitto.conf`)
#   mosquitto-clients           mosquitto_sub / mosquitto_pub, to watch what the daemon publishes
#   python3-gi                  PyGObject: tests/streams/rtsp_server.py is Python + GStreamer
#   gir1.2-gst-rtsp-server-1.0  GstRtspServer (and, as dependencies, the Gst / GstApp typelibs)
#   gstreamer1.0-plugins-base   appsrc / appsink (the looping player feeds the RTSP media)
#   gstreamer1.0-plugins-good   qtdemux (reads the .mp4), rtph264pay, rtpbin, udpsink
#   gstreamer1.0-plugins-bad    h264parse
# Not needed: gstreamer1.0-rtsp (rtspclientsink only), -plugins-ugly (x264enc) and -libav
# (decoders): the server streams the clip's H.264 as is, it never decodes or encodes.
# fonts-noto-color-emoji is needed only to *regenerate* the committed clip (make_stream_clip.py).
set -euo pipefail

PACKAGES=(
  ffmpeg
  mosquitto
  mosquitto-clients
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
)

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "stream test deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if ((EUID != 0)); then SUDO=(sudo); fi

mosquitto_was_installed=0
installed mosquitto && mosquitto_was_installed=1

export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The mosquitto package starts a broker on port 1883 where services may start (systemd hosts;
# Docker images usually forbid it with policy-rc.d). Stop and disable it: tests run their own.
if ((mosquitto_was_installed == 0)); then
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    "${SUDO[@]}" systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    "${SUDO[@]}" service mosquitto stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null && "${SUDO[@]}" update-rc.d mosquitto disable >/dev/null 2>&1 || true
  fi
fi

echo "stream test deps: installed ${missing[*]}"
