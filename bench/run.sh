#!/usr/bin/env bash
# Runs every benchmark on this machine and writes bench/results.md, bench/results.json and
# bench/throughput.png. Needs RabbitMQ (AMQP_URL) and PostgreSQL (DATABASE_URL) as for the tests,
# and about 10 minutes. Usage: bench/run.sh [--duration 8s] [--worker-events 30000]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p countersign-ingester -p countersign-worker -p bench
./target/release/bench all --out bench "$@"

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
python3 bench/plot.py bench/results.json bench/throughput.png
echo "bench/results.md, bench/throughput.png and bench/sustained.png written"
