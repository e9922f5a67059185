#!/usr/bin/env bash
# Instructions per accepted webhook in the ingester, counted by callgrind (stable on this noisy
# machine, unlike wall-clock time): bench/callgrind/run.sh DIR [DIR...] — each DIR holds a release
# countersign-ingester (target/release, or an older commit's build). Needs RabbitMQ on loopback.
# 200 warm-up requests, then the counters are zeroed and 2,000 requests measured.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/cfg.toml" <<TOML
[amqp]
prefix = "callgrind-bench"
[ingester]
listen = "127.0.0.1:18080"
admin_listen = "127.0.0.1:19090"
[ingester.spool]
dir = "$work/spool"
[[sources]]
name = "acme"
provider = "taktikal"
secrets = ["env:ACME_KEY"]
TOML
for dir in "$@"; do
    ACME_KEY=callgrind-bench-key RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/out" \
        "$dir/countersign-ingester" --config "$work/cfg.toml" > "$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 120); do
        curl -sf http://127.0.0.1:19090/readyz > /dev/null && break
        sleep 1
    done
    python3 "$here/send.py" 18080 200 > /dev/null
    callgrind_control -z "$pid" > /dev/null
    accepted=$(python3 "$here/send.py" 18080 2000)
    callgrind_control -d "$pid" > /dev/null
    kill "$pid"
    wait "$pid" 2> /dev/null || true
    total=$(grep -h '^summary:' "$work"/out.1 | awk '{print $2}')
    echo "$dir: $accepted/2000 accepted, $((total / 2000)) instructions per request"
    rm -f "$work"/out*
done
