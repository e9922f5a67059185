"""Core-µs per event of each tier, from bench/tiers.json (written by `bench tiers`)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

json_path, png_path = sys.argv[1], sys.argv[2]
with open(json_path) as f:
    phases = json.load(f)

# The 2 KiB mix only: the PDF rows are another scale (see bench/tiers.md).
mix = [p for p in phases if p["run"] != "PDF"]
ingest = [p for p in mix if p["phase"] == "ingest" or p["phase"].startswith("broker")]
drain = [p for p in mix if p["phase"] in ("drain", "sustained")]
colours = {"ingester": "tab:blue", "worker": "tab:green", "RabbitMQ": "tab:orange", "PostgreSQL": "tab:purple"}


def stacked(axis, rows, groups):
    labels = [f'{p["phase"]} {p["run"]}'.replace(" —", "") for p in rows]
    bottom = [0.0] * len(rows)
    for group in groups:
        values = [p["core_us_per_event"].get(group, 0.0) for p in rows]
        axis.bar(labels, values, bottom=bottom, label=group, color=colours[group])
        bottom = [b + v for b, v in zip(bottom, values)]
    axis.set_ylabel("core-µs per event")


fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
stacked(left, ingest, ["ingester", "RabbitMQ"])
left.axhline(90, color="grey", linestyle="--", linewidth=1, label="target: ingester + RabbitMQ ≤ 90")
left.set_title("Ingest per webhook answered 200, and RabbitMQ alone (pinned)")
# Side by side: the PostgreSQL target is its own bar's.
groups = ["worker", "RabbitMQ", "PostgreSQL"]
width = 0.8 / len(groups)
for i, group in enumerate(groups):
    xs = [x + (i - 1) * width for x in range(len(drain))]
    right.bar(xs, [p["core_us_per_event"].get(group, 0.0) for p in drain], width, label=group, color=colours[group])
right.set_xticks(range(len(drain)), [f'{p["phase"]} {p["run"]}'.replace(" —", "") for p in drain])
right.set_ylabel("core-µs per event")
right.set_title("Drain (pinned) and sustained (not pinned), per event")
right.axhline(150, color="tab:purple", linestyle=":", linewidth=1, label="PostgreSQL target ≤ 150 (its own share)")
for axis in (left, right):
    axis.legend(fontsize="small")
    axis.tick_params(axis="x", labelrotation=20)
fig.suptitle("Cost per event, tier by tier (2 KiB signed events)")
fig.tight_layout()
fig.savefig(png_path, dpi=100)
