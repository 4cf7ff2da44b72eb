#!/bin/bash
# `fourierft serve` end to end (CTest serve_cli): start it on a free loopback port, talk to it with
# curl (health, a completion, an unknown model, a stream), then SIGTERM: it must exit 0 after
# finishing. Usage: serve_cli_test.sh FOURIERFT_CLI MODEL_DIR
set -u
cli=$1 model=$2
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/adapters"
"$cli" serve --model "$model" --adapters "$work/adapters" --port 0 > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "listening on" "$work/log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/log")
[ -n "$port" ] || { echo "no port in: $(cat "$work/log")"; exit 1; }
fail() { echo "FAIL: $*"; cat "$work/log"; exit 1; }
curl -sf "http://127.0.0.1:$port/health" | grep -q '"status":"ok"' || fail health
body='{"model": "base", "prompt": "The restaurant", "max_tokens": 4, "temperature": 0}'
curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d "$body" \
  | grep -q '"object":"text_completion"' || fail completion
code=$(curl -s -o "$work/err" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" \
  -H 'Content-Type: application/json' -d '{"model": "nope", "prompt": "Hi"}')
[ "$code" = 404 ] && grep -q '"code":"model_not_found"' "$work/err" || fail "unknown model: $code $(cat "$work/err")"
curl -sfN "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "base", "prompt": "Hi", "max_tokens": 3, "stream": true}' | tail -2 | grep -q 'data: \[DONE\]' \
  || fail stream
kill -TERM "$pid"
wait "$pid"
status=$?
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
grep -q "SIGTERM, finishing" "$work/log" && grep -q "stopped after" "$work/log" || fail "no graceful stop"
echo "serve_cli: ok (port $port)"
