#!/usr/bin/env bash
# One-time (idempotent) setup on Debian/Ubuntu: system packages and a virtualenv in .venv.
# System packages: espeak-ng (emulator TTS and synthesized callers), sox and ffmpeg (audio
# tools, pydub), chromium + chromium-driver (the real-browser test), postgresql (the
# PostgreSQL booking-store tests), nginx (the reverse-proxy test of scripts/deploy/nginx).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(espeak-ng sox ffmpeg chromium chromium-driver postgresql nginx)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
echo "setup: ok (.venv ready)"
