"""Throughput and p99 latency against connections, from bench/results.json."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results_path, png_path = sys.argv[1], sys.argv[2]
with open(results_path) as f:
    results = json.load(f)

curve = results["curve"]
connections = [ingest["connections"] for ingest, _, _ in curve]
series = {
    "ingester": [ingest for ingest, _, _ in curve],
    "broker ceiling (publish + confirm)": [broker for _, broker, _ in curve],
    "HTTP ceiling (actix, read body, 200)": [http for _, _, http in curve],
}

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
for name, points in series.items():
    left.plot(connections, [p["per_second"] for p in points], marker="o", label=name)
    right.plot(connections, [p["p99_ms"] for p in points], marker="o", label=name)
left.set(xscale="log", xlabel="connections (requests in flight)", ylabel="per second", title="Throughput, 2 KiB events")
right.set(xscale="log", yscale="log", xlabel="connections (requests in flight)", ylabel="p99 latency (ms)", title="p99 latency, 2 KiB events")
right.axhline(10, color="grey", linestyle="--", linewidth=1, label="target p99 at 64: 10 ms")
for axis in (left, right):
    axis.set_xticks(connections)
    axis.set_xticklabels([str(c) for c in connections])
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
fig.suptitle(f"Countersign ingest — {results['date']}, commit {results['commit']}", fontsize=10)
fig.tight_layout()
fig.savefig(png_path, dpi=110)

# The sustained run: queue depth over time.
sustained = results.get("sustained")
if sustained:
    fig, axis = plt.subplots(figsize=(8, 4))
    times = [t for t, _ in sustained["depth"]]
    depths = [n for _, n in sustained["depth"]]
    axis.plot(times, depths, label="messages ready in <prefix>.persist")
    axis.axvline(sustained["load_s"], color="grey", linestyle="--", linewidth=1, label="load stops")
    axis.set(
        xlabel="seconds",
        ylabel="messages",
        title=f"Sustained {sustained['offered_per_second']:.0f} events/s: end-to-end p50 "
        f"{sustained['end_to_end_p50_ms']:.0f} ms, p99 {sustained['end_to_end_p99_ms']:.0f} ms",
    )
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    fig.suptitle(f"Countersign ingester + worker — {results['date']}, commit {results['commit']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path.replace("throughput.png", "sustained.png"), dpi=110)
