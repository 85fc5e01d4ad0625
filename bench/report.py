"""Turn one `make bench` run (JSON lines) and criterion's estimates into a Markdown table."""
import glob
import json
import os
import sys

results_path, criterion_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(results_path)]
by_name = {r["name"]: r for r in rows}


def rate(r):
    return r["summary"].get("in", n) / r["wall_s"] if r["wall_s"] else 0.0


print(f"## rtds benchmark, {n:,} records\n")
print("| step | records/s | MB/s | wall s | CPU s | peak RSS MB | vs baseline |")
print("|---|---:|---:|---:|---:|---:|---|")
for r in rows:
    mb = r["summary"].get("bytes")
    mbs = f"{mb / 1e6 / r['wall_s']:.1f}" if mb else ""
    ratio = ""
    for other in rows:
        if other.get("baseline_of") == r["name"]:
            ratio = f"{rate(r) / rate(other):.0%} of {other['name']}"
    print(f"| {r['name']} | {rate(r):,.0f} | {mbs} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | {ratio} |")

print("\n### criterion (one core, in process)\n")
print("| benchmark | time per iteration | throughput |")
print("|---|---:|---:|")
for est in sorted(glob.glob(os.path.join(criterion_dir, "*", "*", "new", "estimates.json"))):
    group, bench = est.split(os.sep)[-4:-2]
    mean_ns = json.load(open(est))["mean"]["point_estimate"]
    bench_json = os.path.join(os.path.dirname(est), "benchmark.json")
    per = 1
    try:
        tp = json.load(open(bench_json)).get("throughput") or {}
        per = tp.get("Elements") or tp.get("Bytes") or 1
        unit = "elements/s" if "Elements" in tp else "bytes/s"
    except (OSError, ValueError):
        unit = "iter/s"
    print(f"| {group}/{bench} | {mean_ns / 1e3:,.1f} µs | {per / (mean_ns / 1e9):,.0f} {unit} |")
