#!/usr/bin/env bash
# System packages and the Docker daemon for the deployment tests of `make test`: the scale-out
# test (python -m dosod_tools.deploy.scaleout) and the container test (…deploy.container).
#
# Installs, with apt, only the packages that are missing, leaves no Redis or nginx running as a
# system service (the scale-out test starts its own, on free loopback ports), and starts a Docker
# daemon (vfs storage: it works in a VM or a container without overlayfs) when none answers.
# Idempotent. Needs root (or sudo) and a Debian/Ubuntu apt.
#
# Why each package is here:
#   redis-server   the shared vocabulary store of the replicas (and redis-cli, to read it back)
#   nginx          the load balancer, with deploy/nginx/dosod.conf
#   docker.io      the daemon (and a client with BuildKit, DOCKER_BUILDKIT=1) the image is built
#                  and run with
#   debootstrap    makes the Debian base image, since public images cannot be pulled
set -euo pipefail

PACKAGES=(redis-server nginx docker.io debootstrap)

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

SUDO=()
if ((EUID != 0)); then SUDO=(sudo); fi

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
  "${SUDO[@]}" apt-get update -qq >/dev/null
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where packages start services (systemd hosts), stop the ones the tests run themselves.
  for service in redis-server nginx; do
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    elif command -v service >/dev/null; then
      "${SUDO[@]}" service "$service" stop >/dev/null 2>&1 || true
    fi
  done
  echo "deploy test deps: installed ${missing[*]}"
else
  echo "deploy test deps: all ${#PACKAGES[@]} packages already installed"
fi

if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    "${SUDO[@]}" systemctl start docker >/dev/null 2>&1 || true
  fi
fi
if ! docker info >/dev/null 2>&1; then
  log=/var/log/dosod-test-dockerd.log
  "${SUDO[@]}" bash -c "nohup dockerd --storage-driver=vfs >$log 2>&1 &"
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see $log"; tail -20 "$log"; exit 1; }
  echo "deploy test deps: started dockerd (vfs storage; log in $log)"
fi
