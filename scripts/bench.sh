#!/usr/bin/env bash
# Regenerates the results table of docs/benchmarks.md (takes ~15-20 minutes).
# Run on an otherwise idle machine: the report shows other processes' CPU ("other procs").
# Not run by CI.  Usage: scripts/bench.sh [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
D=${1:-30}
# BENCH_OUT=DIR keeps every point's JSON there (e.g. to re-render the report).
if [ -n "${BENCH_OUT:-}" ]; then OUT=$BENCH_OUT; mkdir -p "$OUT"; else
  OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; fi
run() { local name=$1; shift; "$PY" -m voicebot.cli bench "$@" --duration "$D" --json >"$OUT/$name.json"; }
run ws-1 --calls 1
run ws-100 --calls 100
run chat-1 --calls 1 --dialogue chat
run chat-100 --calls 100 --dialogue chat
run ws-50 --calls 50
run ws-200 --calls 200
run vox-50 --transport voximplant --calls 50
run as-50 --transport audiosocket --calls 50
run ws-ramp --calls 800 --ramp
"$PY" -m voicebot.cli bench --suite --json >"$OUT/suite.json"
"$PY" -m voicebot.bench.report docs/benchmarks.md \
  "scripts/bench.sh $D  (voicebot bench --calls N --duration $D [--dialogue chat] [--transport T] [--ramp] --json; voicebot bench --suite --json)" \
  "$OUT"/ws-1.json "$OUT"/ws-100.json "$OUT"/chat-1.json "$OUT"/chat-100.json \
  "$OUT"/ws-50.json "$OUT"/ws-200.json "$OUT"/vox-50.json "$OUT"/as-50.json \
  "$OUT"/ws-ramp.json "$OUT"/suite.json
echo "docs/benchmarks.md updated"
