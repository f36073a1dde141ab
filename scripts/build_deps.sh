#!/usr/bin/env bash
# Build dependencies of the dosod binary beyond Rust (Debian): CMake and NASM, which build the
# SIMD libjpeg-turbo that the `turbojpeg` crate bundles. Installs only what is missing.
set -euo pipefail
PACKAGES=(cmake nasm)
missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
SUDO=()
if ((EUID != 0)); then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "build deps: installed ${missing[*]}"
