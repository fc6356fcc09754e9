#!/usr/bin/env bash
# The same as api_client.py with curl and jq, on the LangGraph HTTP API that `atelier serve` exposes.
#   examples/api_curl.sh "a brass owl automaton"            URL, ATELIER_USER (X-Atelier-User) and OUT are optional
#   THREAD=<id> examples/api_curl.sh "find the brass owl I made"     continue a thread
set -euo pipefail
URL=${URL:-http://127.0.0.1:2024}
USER_HEADER="X-Atelier-User: ${ATELIER_USER:-local}"
OUT=${OUT:-out}
REQUEST=${1:?usage: $0 \"a brass owl automaton\"}
ENHANCE=${ENHANCE:-true}
mkdir -p "$OUT"

# 1. A thread (skipped when THREAD is given).
THREAD=${THREAD:-$(curl -fsS -X POST "$URL/threads" -H "$USER_HEADER" -H 'Content-Type: application/json' \
  -d '{"metadata": {"app": "curl-example"}}' | jq -r .thread_id)}
echo "thread $THREAD"

# 2. Run and stream: Server-Sent Events, one "event:" line (updates | custom | metadata | end) and one "data:" line each.
jq -n --arg text "$REQUEST" --argjson enhance "$ENHANCE" '{assistant_id: "atelier",
    input: {messages: [{role: "user", content: $text}]},
    config: {configurable: {enhance: $enhance}},
    stream_mode: ["updates", "custom"]}' |
curl -fsS -N -X POST "$URL/threads/$THREAD/runs/stream" -H "$USER_HEADER" -H 'Content-Type: application/json' -d @- |
  sed -n 's/^data: //p' | jq -rc 'select(.event? == "step_start" or .event? == "step_end")
    | if .event == "step_start" then "→ \(.tool)" else "✓ \(.tool) (\(.backend), \(.seconds)s)" end'

# 3. The state holds the creation; its files come from GET /assets/{sha256}.
STATE=$(curl -fsS "$URL/threads/$THREAD/state" -H "$USER_HEADER")
echo "$STATE" | jq -r '.values.messages[-1].content'
CREATION=$(echo "$STATE" | jq -r '.values.creation_id')
for kind in image model; do
  SHA=$(echo "$STATE" | jq -r --arg k "$kind" '.values[$k].sha256 // empty')
  [ -n "$SHA" ] || continue
  EXT=$(echo "$STATE" | jq -r --arg k "$kind" '.values[$k].rel_path | capture("(?<e>\\.[a-z0-9]+)$").e')
  curl -fsS "$URL/assets/$SHA" -H "$USER_HEADER" -o "$OUT/$CREATION$EXT"
  echo "saved $kind: $OUT/$CREATION$EXT"
done
# The creation record, with asset URLs:  curl "$URL/creations/$CREATION" -H "$USER_HEADER"

# 4. History: every step is a checkpoint.
curl -fsS -X POST "$URL/threads/$THREAD/history" -H "$USER_HEADER" -H 'Content-Type: application/json' -d '{"limit": 100}' |
  jq -r --arg t "$THREAD" '"thread \($t): \(length) checkpoints; continue with THREAD=\($t)"'
