#!/usr/bin/env bash
# Copies the 3D viewer's browser scripts from ui/node_modules (installed by `npm ci` from ui/package-lock.json)
# into public/vendor/, which Chainlit serves at /public/vendor/. Nothing is loaded from a CDN at run time.
# Run by scripts/bootstrap.sh after `npm ci`; safe to run again.
set -euo pipefail
UI="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$UI")"
NM="$UI/node_modules"
OUT="$ROOT/public/vendor"

if [ ! -f "$NM/@google/model-viewer/dist/model-viewer.min.js" ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "build_assets: ui/node_modules is missing and npm is not installed; run 'cd ui && npm ci'" >&2
    exit 1
  fi
fi

mkdir -p "$OUT/model-viewer" "$OUT/draco" "$OUT/basis"
# model-viewer with three.js bundled in (one ES module, ~1 MB).
cp "$NM/@google/model-viewer/dist/model-viewer.min.js" "$OUT/model-viewer/model-viewer.min.js"
cp "$NM/@google/model-viewer/LICENSE" "$OUT/model-viewer/LICENSE" 2>/dev/null || true
# Decoders model-viewer would otherwise fetch from gstatic for Draco / KTX2 compressed models.
cp "$NM/three/examples/jsm/libs/draco/gltf/"draco_{decoder.js,decoder.wasm,wasm_wrapper.js} "$OUT/draco/"
cp "$NM/three/examples/jsm/libs/basis/basis_transcoder."* "$OUT/basis/"
version=$(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' "$NM/@google/model-viewer/package.json" | head -1)
echo "{\"model-viewer\": \"$version\"}" > "$OUT/versions.json"
echo "build_assets: model-viewer $version -> public/vendor/"
