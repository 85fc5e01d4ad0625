"""The Python half of `make bench` (bench/run.sh), one subcommand per job:

  record NAME BASELINE_OF OUT TIME   a step's JSON line: its summary (last JSON line of OUT),
                                     wall and CPU seconds and peak RSS (/usr/bin/time's TIME)
  field FILE KEY                     KEY of the last JSON line of FILE
  csv JSONL CSV COLUMNS              JSON rows to CSV, COLUMNS (comma-separated) in order
  copied LOG N                       psql's "COPY n" in LOG as a summary line (exit 1 if n != N)
  metric ADDR NAME STAGE             the sum of NAME{stage="STAGE"} on a stage's /metrics
  dag N T0 T1 LOG                    the DAG run's JSON line (Airflow's run duration in LOG)
  cpu NAME=PID...                    the CPU seconds so far of each process, the time, the cores (JSON)
  requests ADDR                      the Kafka requests a stage's clients sent so far (its /metrics)
  cores NAME RATE PREFIX             a real-time run's cost: what each process took of the cores
                                     between two `cpu` snapshots (PREFIX_cpu_{before,after}.json),
                                     the requests a second of each stage's clients (PREFIX_*req_*)
                                     (the process timed in TIME, run in between, counted whole)
  json RESULTS RUN                   the run's steps as one JSON document
  report RESULTS CRITERION_DIR N PNG the Markdown report on stdout and a PNG chart
  soak WORK RUN RATE MINUTES WINDOW RECONCILED
                                     `make soak`'s table (scripts/soak.sh): each stage's peak RSS in
                                     the first window after warm-up and the last, p99 per window,
                                     reconcile; exit 1 if memory grew over 10% or reconcile failed

Only `report` needs matplotlib (the bench's own venv); the rest is the standard library."""

import glob
import json
import math
import os
import re
import sys
import time
import urllib.request


def last_json(path):
    lines = [line for line in open(path).read().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def record(name, baseline_of, out, timing):
    wall, user, sys_, rss_kb = open(timing).read().split()[-4:]
    summary = last_json(out)
    # A baseline that prepares before its work (the bare passthrough reads the
    # clean rows first) times the work itself: its own figures, not the process's.
    print(
        json.dumps(
            {
                "name": name,
                "baseline_of": baseline_of or None,
                "summary": summary,
                "wall_s": summary.get("timed_wall_s", float(wall)),
                "cpu_s": summary.get("timed_cpu_s", float(user) + float(sys_)),
                "peak_rss_mb": int(rss_kb) / 1024,
            }
        )
    )


def field(path, key):
    print(last_json(path)[key])


def to_csv(jsonl, out, columns):
    import csv

    cols = columns.split(",")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        for line in open(jsonl):
            r = json.loads(line)
            w.writerow([r.get(c) for c in cols])


def copied(log, expected):
    """psql prints `COPY n` for a \\copy: the count the server reports, not the one asked for."""
    found = re.findall(r"^COPY (\d+)$", open(log).read(), re.M)
    if not found:
        sys.exit(f"no `COPY n` line in {log}")
    n = int(found[-1])
    print(json.dumps({"stage": "psql_copy", "in": n, "out": n}))
    if n != int(expected):
        sys.exit(f"psql \\copy wrote {n} rows, expected {expected}")


def metric(addr, name, stage):
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    print(sum(int(float(v)) for v in re.findall(rf'^{name}\{{stage="{stage}"\}} (\S+)$', text, re.M)) or 0)


def dag(n, t0, t1, log):
    run = float(re.search(r"DagRun Finished:.*?run_duration=([0-9.]+)", open(log).read()).group(1))
    summary = {"in": int(n), "command_s": float(t1) - float(t0)}
    print(
        json.dumps(
            {
                "name": "dag_user_automation",
                "baseline_of": None,
                "summary": summary,
                "wall_s": run,
                "cpu_s": None,
                "peak_rss_mb": None,
            }
        )
    )


def switches(pid):
    """Context switches so far of a process's live threads (voluntary and not): each one a
    wake-up or a preemption, what a thread that waits in short timed parks pays for."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{task}/status"):
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            pass  # the thread ended between the listing and the read
    return total


def cpu(*named):
    """CPU seconds and context switches so far of each NAME=PID process (user + system; a NAME
    given twice, the sum: the Kafka nodes; a process gone is absent), with the time and the
    machine's core count."""
    tick = os.sysconf("SC_CLK_TCK")
    procs, switched = {}, {}
    for item in named:
        name, pid = item.split("=", 1)
        try:
            # Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            procs[name] = procs.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
            switched[name] = switched.get(name, 0) + switches(pid)
        except (OSError, IndexError, ValueError):
            pass
    print(json.dumps({"processes": procs, "switches": switched, "at": time.time(), "cores": os.cpu_count()}))


def requests(addr):
    """`rtds_kafka_requests_total{client,request}` and `rtds_kafka_client_seconds{client}` on a
    stage's /metrics: per client, the requests sent so far by type and the client's age."""
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    out = {}
    for labels, value in re.findall(r"^rtds_kafka_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        kv = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out.setdefault(kv["client"], {"seconds": 0.0, "sent": {}})["sent"][kv["request"]] = float(value)
    for labels, value in re.findall(r"^rtds_kafka_client_seconds\{([^}]*)\} (\S+)$", text, re.M):
        client = dict(re.findall(r'(\w+)="([^"]*)"', labels))["client"]
        out.setdefault(client, {"seconds": 0.0, "sent": {}})["seconds"] = float(value)
    print(json.dumps(out))


def per_second(before, after):
    """Requests a second of each client, by type, between two `requests` readings (each client's
    counts over its own clock: the statistics come every second, not at the readings)."""
    out = {}
    for client, a in after.items():
        b = before.get(client, {"seconds": 0.0, "sent": {}})
        span = a["seconds"] - b["seconds"]
        if span > 0:
            out[client] = {k: (v - b["sent"].get(k, 0)) / span for k, v in a["sent"].items()}
    return out


def cores(name, rate, prefix):
    """A real-time run's cost: what each process took of the machine's cores between two `cpu`
    snapshots and its context switches a second; the ingest (run in between, if the run ingests)
    counted whole from /usr/bin/time (its switches not counted); the requests a second of the
    stages' Kafka clients (the ingest's from its summary). (Not the machine's own busy time:
    /proc/stat's totals here fall ~10% short of the wall time, a VM's lost ticks.)"""
    b, a = json.load(open(f"{prefix}_cpu_before.json")), json.load(open(f"{prefix}_cpu_after.json"))
    split = {p: a["processes"][p] - b["processes"][p] for p in a["processes"] if p in b["processes"]}
    timing = open(f"{prefix}_ingest.time").read().split()
    wall = a["at"] - b["at"]
    reqs = {}
    if timing:
        _, user, sys_, _ = timing[-4:]
        split["ingest"] = float(user) + float(sys_)
        sent = last_json(f"{prefix}_ingest.out").get("kafka_requests", {})
        reqs["ingest"] = {c: {k: v / r["seconds"] for k, v in r["sent"].items()} for c, r in sent.items()}
    for stage, short in (("transform", "t"), ("load", "l")):
        if os.path.exists(f"{prefix}_{short}req_before.json"):  # a floor run has no stages
            reqs[stage] = per_second(
                json.load(open(f"{prefix}_{short}req_before.json")), json.load(open(f"{prefix}_{short}req_after.json"))
            )
    per_s = {p: (n - b["switches"][p]) / wall for p, n in a["switches"].items() if p in b["switches"]}
    print(
        json.dumps(
            {
                "name": f"cores_{name}",
                "rate": int(rate),
                "wall_s": wall,
                "cores": a["cores"],
                "cpu_s": split,
                "switches_per_s": per_s,
                "requests_per_s": reqs,
            }
        )
    )


def as_json(results, run):
    print(json.dumps({"run": run, "steps": [json.loads(line) for line in open(results)]}, indent=1))


def rate(r, n):
    return r["summary"].get("in", n) / r["wall_s"] if r["wall_s"] else 0.0


def num(v, fmt):
    return "" if v is None else format(v, fmt)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def merge(steps, n):
    """A step and its repeat (NAME_2: the bench runs each pair A-B-B-A) as one row with the
    mean rate, wall, CPU and MB/s of its runs and the larger peak RSS."""
    groups = {}
    for r in steps:
        groups.setdefault(r["name"].removesuffix("_2"), []).append(r)
    merged = []
    for name, runs in groups.items():
        m = dict(runs[0], name=name, runs=len(runs))
        m["baseline_of"] = (m.get("baseline_of") or "").removesuffix("_2") or None
        m["rate"] = mean(rate(r, n) for r in runs)
        m["wall_s"] = mean(r["wall_s"] for r in runs)
        m["cpu_s"] = mean(r["cpu_s"] for r in runs)
        m["peak_rss_mb"] = max((r["peak_rss_mb"] or 0 for r in runs), default=0) or None
        m["mbs"] = mean(r["summary"]["bytes"] / 1e6 / r["wall_s"] for r in runs if r["summary"].get("bytes"))
        merged.append(m)
    return merged


STAGES = ["ingest", "transform", "load"]
# Issue 35's goals at 1,000 records/s (single-node stack): each stage at most 2% of a core, the
# broker at most half of what it took before, idle stages at most 0.3% of a core, p50 and p99.
STAGE_MAX_PER_MIN = 1.2
IDLE_MAX_PER_MIN = 0.18
P50_MAX_MS, P99_MAX_MS = 30, 100


def run_cost(c, realtime):
    """One real-time run's figures: CPU-s a minute and CPU-µs a record of each process, the
    records, the latency (the load's summary) and the requests a second of each stage."""
    by_name = {r["name"]: r for r in realtime}
    run = c["name"].removeprefix("cores_")
    ingest = by_name.get(f"{run}_ingest")
    load = by_name.get(f"{run}_load") or {"summary": {}}
    records = ingest["summary"].get("out", 0) if ingest else 0
    per_min, per_record = {}, {}
    for proc, cpu in c["cpu_s"].items():
        # The ingest's minute is its own run; the others' the window between the snapshots.
        wall = ingest["summary"]["seconds"] if proc == "ingest" and ingest else c["wall_s"]
        per_min[proc] = cpu / wall * 60
        per_record[proc] = cpu / records * 1e6 if records else None
    return {
        "run": run,
        "rate": c.get("rate"),
        "records": records,
        "per_min": per_min,
        "per_record": per_record,
        "latency": load["summary"].get("latency_ms") or {},
        "requests": c.get("requests_per_s", {}),
    }


def cost_tables(cores_used, realtime, before):
    costs = [run_cost(c, realtime) for c in cores_used]
    print("\n### cost at the rates users run (CPU-s a minute, and CPU-µs a record, of each process)\n")
    print(
        "Each run: the stages' start-up excluded (the clock starts once both --follow stages hold their "
        "partitions), 60 s of ingest at the rate, until the load has written the last row.\n"
    )
    procs = STAGES + ["floor", "kafka", "cassandra"]
    print("| run | records/s | " + " | ".join(procs) + " | end-to-end p50 / p95 / p99 ms |")
    print("|---|---:|" + "---:|" * len(procs) + "---:|")
    for k in costs:
        cells = []
        for p in procs:
            m, r = k["per_min"].get(p), k["per_record"].get(p)
            cells.append("" if m is None else f"{m:.2f}" + (f" ({r:,.0f} µs)" if r is not None else ""))
        lat = k["latency"]
        lat_cell = f"{lat['p50']} / {lat['p95']} / {lat['p99']}" if "p50" in lat else ""
        print(f"| {k['run']} | {k['rate']:,} | " + " | ".join(cells) + f" | {lat_cell} |")

    print("\n| run | Kafka requests a second: " + " | ".join(STAGES) + " | by type (all stages) |")
    print("|---|" + "---:|" * len(STAGES) + "---|")
    for k in costs:
        cells, kinds = [], {}
        for stage in STAGES:
            clients = k["requests"].get(stage, {})
            cells.append(
                ", ".join(f"{c} {sum(v.values()):,.0f}" for c, v in sorted(clients.items())) if clients else ""
            )
            for v in clients.values():
                for kind, n in v.items():
                    kinds[kind] = kinds.get(kind, 0) + n
        top = ", ".join(f"{kind} {n:,.1f}" for kind, n in sorted(kinds.items(), key=lambda x: -x[1]) if n >= 0.05)
        print(f"| {k['run']} | " + " | ".join(cells) + f" | {top} |")

    by_run = {k["run"]: k for k in costs}
    for k in costs:
        floor = k["per_min"].get("floor")
        if k["rate"] != 1000 or floor is None:
            continue
        transform = by_run.get(stage_run(k["run"]), {"per_min": {}})["per_min"].get("transform")
        how = ", a transaction a batch" if k["run"].endswith("eos") else ""
        print(
            f"\nThe floor (run {k['run']}): bare librdkafka reading the ingest's topic and producing each "
            f"record on{how}, no work, took {floor:.2f} CPU-s a minute"
            + (f"; the transform at the same rate {transform / floor:.1f} times that" if transform and floor else "")
            + (
                ". A stage goal under the floor is under what the Kafka client alone costs at this rate."
                if floor > STAGE_MAX_PER_MIN
                else "."
            )
        )
    return [check for k in costs for check in cost_goals(k, before)]


def cost_goals(k, before):
    """A real-time run's rows of issue 35's goals: (what, run, measured, goal, met)."""
    cpu, ms = [], []  # CPU goals are "at most", latency goals "under"
    if "floor" in k["run"]:
        if k["rate"] == 1000:
            cpu.append(
                ("the floor at 1,000/s (bare librdkafka), CPU-s a minute", k["per_min"].get("floor"), STAGE_MAX_PER_MIN)
            )
            # The broker under the bare clients, against the goal of the stages' path.
            kafka_before = before_kafka_per_min(before, stage_run(k["run"]))
            if kafka_before:
                what = f"broker under the floor at 1,000/s, CPU-s a minute (half of {kafka_before:.2f} before)"
                cpu.append((what, k["per_min"].get("kafka"), kafka_before / 2))
    elif k["rate"] == 0:
        cpu += [(f"{s} idle, CPU-s a minute", k["per_min"].get(s), IDLE_MAX_PER_MIN) for s in STAGES[1:]]
    elif k["rate"] == 1000:
        cpu += [(f"{s} at 1,000/s, CPU-s a minute", k["per_min"].get(s), STAGE_MAX_PER_MIN) for s in STAGES]
        # Each path against its own run before: exactly once's broker against exactly once's.
        kafka_before = before_kafka_per_min(before, k["run"])
        if kafka_before:
            what = f"broker at 1,000/s, CPU-s a minute (half of {kafka_before:.2f} before)"
            cpu.append((what, k["per_min"].get("kafka"), kafka_before / 2))
        ms.append(("end-to-end p50 ms", k["latency"].get("p50"), P50_MAX_MS))
        ms.append(("end-to-end p99 ms", k["latency"].get("p99"), P99_MAX_MS))
    rows = []
    for checks, within in ((cpu, lambda got, goal: got <= goal), (ms, lambda got, goal: got < goal)):
        for what, got, goal in checks:
            met = "" if got is None else ("yes" if within(got, goal) else "**no**")
            rows.append((what, k["run"], num(got, ".2f"), f"{goal:.2f}", met))
    return rows


def goals_table(rows, before):
    """Issue 35's goals, every one this run measured, in one table."""
    if not rows:
        return
    print("\n### issue 35's goals in this run\n")
    print("| goal (issue 35) | run | measured | goal | met |")
    print("|---|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if any(row[0].startswith("broker") for row in rows):
        print(
            f"\nBefore: run {before['run']} (bench/results/latest.json at {BEFORE_COMMIT}); each path's broker "
            "against the same path's run there. Full speed: this build against the one before issue 35, in turns "
            "(the `against` table)."
        )


# The commit whose bench/results/latest.json is the run issue 35's goals compare with.
BEFORE_COMMIT = "edfefa2"


def reference():
    """The run before issue 35, from git (None outside a clone)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:bench/results/latest.json"], capture_output=True, check=True
        ).stdout
        return json.loads(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


def stage_run(floor_run):
    """The stages' run a floor run stands beside: rt1000floor's is rt1000, rt1000flooreos's rt1000eos."""
    return floor_run.replace("floor", "")


def before_kafka_per_min(before, run):
    for r in (before or {}).get("steps", []):
        if r["name"] == f"cores_{run}":
            return r["cpu_s"]["kafka"] / r["wall_s"] * 60
    return None


# Issue 35: at full speed no stage loses more than 5% of its records/s.
MAX_LOSS = 0.05
# Student's t at 95% (one side), by degrees of freedom: a 90% interval of a mean of a few rounds.
T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}


def paired_change(now, then):
    """The change from `then` to `now` (rates of the same rounds) as the geometric mean of the
    rounds' ratios, with its 90% interval: (change, low, high)."""
    logs = [math.log(a / b) for a, b in zip(now, then, strict=True)]
    m = mean(logs)
    if len(logs) < 2:
        return math.exp(m) - 1, None, None
    sd = math.sqrt(sum((x - m) ** 2 for x in logs) / (len(logs) - 1))
    half = T95.get(len(logs) - 1, 1.645) * sd / math.sqrt(len(logs))
    return math.exp(m) - 1, math.exp(m - half) - 1, math.exp(m + half) - 1


def verdict(low, high):
    """Within MAX_LOSS only when the whole interval is; short of it only when the whole interval is."""
    if low is not None and low >= -MAX_LOSS:
        return "yes"
    if high is not None and high < -MAX_LOSS:
        return "**no**"
    return "not told apart from the noise"


def against(rows, n):
    """The `against` step's table: each step's runs of this build (now_STEP_I) and of the build
    compared with (then_STEP_I), in turns, as means, and whether it is within MAX_LOSS; its rows
    of issue 35's goals."""
    build = next((r for r in rows if r["name"] == "against_build"), None)
    runs = {}
    for r in rows:
        who, _, rest = r["name"].partition("_")
        if who in ("now", "then"):
            step, _, i = rest.rpartition("_")
            runs.setdefault(step, {"now": {}, "then": {}})[who][i] = r
    if not build or not runs:
        return []
    commit = build["summary"]["commit"][:7]
    goals = []
    print(f"\n### full speed against {commit} (its release build and this one in turns; at most 5% slower)\n")
    print(
        "| step | runs each | records/s then | now | change (90% interval) | the rounds' changes | CPU s then | now "
        "| peak RSS MB then | now | within 5% |"
    )
    print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|")
    for step, by in runs.items():
        # The rounds both builds ran (a run cut short leaves one side alone).
        both = sorted(by["now"].keys() & by["then"].keys())
        if not both:
            continue
        by = {who: [by[who][i] for i in both] for who in by}
        rates = {who: [rate(r, n) for r in by[who]] for who in by}
        # Each round's change (its two runs side by side): the machine moves ±10% between runs.
        rounds = sorted(a / b - 1 for a, b in zip(rates["now"], rates["then"], strict=True))
        change, low, high = paired_change(rates["now"], rates["then"])
        interval = f" ({low:+.1%} to {high:+.1%})" if low is not None else ""
        within = verdict(low, high)
        cpu = {who: mean(r["cpu_s"] for r in by[who]) for who in by}
        rss = {who: max(r["peak_rss_mb"] or 0 for r in by[who]) for who in by}
        print(
            f"| {step} | {len(both)} | {mean(rates['then']):,.0f} | {mean(rates['now']):,.0f} "
            f"| {change:+.1%}{interval} | {rounds[0]:+.1%} to {rounds[-1]:+.1%} | {cpu['then']:.2f} | {cpu['now']:.2f} "
            f"| {rss['then']:.0f} | {rss['now']:.0f} | {within} |"
        )
        what = f"{step} at full speed, change of records/s against {commit} (90% interval)"
        goals.append((what, "against", f"{change:+.1%}{interval}", f"{-MAX_LOSS:+.0%}", within))
    built = f"built in {build['wall_s'] / 60:.1f} min" if build["wall_s"] >= 60 else "its kept build reused"
    print(
        "\nEach round ran both builds one after the other, the order turned each round; each load read the "
        "rows its own build's transform wrote. The change is the geometric mean of the rounds' ratios; a step "
        f"is within 5% when its whole 90% interval is, short of it when its whole interval is below. {commit}: {built}."
    )
    return goals


# Issue 36's goals: the Avro path costs no more CPU a record than JSON, its rows are 40% smaller.
AVRO_ROWS_SMALLER = 0.40


def avro_against_json(batch, sizes, n):
    """The avro step's table: each path's records/s, CPU-µs a record and bytes a record, JSON's
    and Avro's runs on the same users side by side, and whether issue 36's goals were met."""
    by = {r["name"]: r for r in batch}
    if "transform_avro" not in by or "transform_json" not in by:
        return

    def bytes_per_record(r):
        return r["summary"]["bytes"] / r["summary"]["in"] if r and r["summary"].get("in") else None

    def per_record(r):
        return r["cpu_s"] * 1e6 / r["summary"].get("in", n) if r else None

    raw = {"json": bytes_per_record(by.get("ingest")), "avro": bytes_per_record(by.get("ingest_avro"))}
    rows = {f: bytes_per_record(sizes.get(f"rows_{f}")) for f in ("json", "avro")}
    print("\n### Avro against JSON (the same users; each pair A-B-B-A)\n")
    print("| step | format | records/s | CPU µs a record | raw bytes a record | row bytes a record |")
    print("|---|---|---:|---:|---:|---:|")
    for step in ("transform", "load_parquet"):
        for f in ("json", "avro"):
            r = by.get(f"{step}_{f}")
            if r:
                print(
                    f"| {step} | {f} | {r['rate']:,.0f} | {num(per_record(r), '.2f')} "
                    f"| {num(raw[f] if step == 'transform' else None, ',.0f')} | {num(rows[f], ',.0f')} |"
                )
    for step in ("transform", "load_parquet"):
        j, a = by.get(f"{step}_json"), by.get(f"{step}_avro")
        if j and a:
            cpu_j, cpu_a = per_record(j), per_record(a)
            met = "met" if cpu_a <= cpu_j else "not met"
            share = f"{cpu_a / cpu_j:.0%}"
            print(f"\n{step}: Avro {cpu_a:.2f} CPU-µs a record against JSON's {cpu_j:.2f} ({share}): {met}.")
    if rows["json"] and rows["avro"]:
        smaller = 1 - rows["avro"] / rows["json"]
        met = "met" if smaller >= AVRO_ROWS_SMALLER else "not met"
        print(f"\nThe Avro rows are {smaller:.0%} smaller than the JSON rows (goal {AVRO_ROWS_SMALLER:.0%}): {met}.")


# Issue 37's goal: the Delta load keeps at least this share of the Parquet load's records/s.
DELTA_OF_PARQUET = 0.80


def delta_against_parquet(batch):
    """The lake step's verdict: the Delta load's records/s and peak RSS against the Parquet load's
    on the same rows (each the mean of its A-B-B-A runs)."""
    by = {r["name"]: r for r in batch}
    d, p = by.get("load_delta"), by.get("load_parquet")
    if not (d and p):
        return
    share = d["rate"] / p["rate"]
    met = "met" if share >= DELTA_OF_PARQUET else "not met"
    print("\n### Delta against Parquet (the same rows; A-B-B-A)\n")
    print(
        f"load --sink delta {d['rate']:,.0f} records/s, peak RSS {num(d['peak_rss_mb'], '.0f')} MB; "
        f"--sink parquet {p['rate']:,.0f} records/s, {num(p['peak_rss_mb'], '.0f')} MB: "
        f"{share:.0%} of Parquet's records/s (goal {DELTA_OF_PARQUET:.0%}): {met}."
    )


def aggregate_against_group_by(batch):
    """The aggregate step: rtds aggregate against one batch GROUP BY of the same SQL over the
    same records (each the mean of its A-B-B-A runs), and the state its summaries counted."""
    by = {r["name"]: r for r in batch}
    a, g = by.get("aggregate"), by.get("group_by")
    if not (a and g):
        return
    print("\n### windowed aggregation against one batch GROUP BY (the same SQL and records; A-B-B-A)\n")
    print(
        f"rtds aggregate {a['rate']:,.0f} records/s, peak RSS {num(a['peak_rss_mb'], '.0f')} MB; the batch GROUP BY "
        f"{g['rate']:,.0f} records/s, {num(g['peak_rss_mb'], '.0f')} MB: "
        f"{a['rate'] / g['rate']:.0%} of its records/s.\n"
    )
    print("| step | windows | rows out | state rows (most) | state MB (most) |")
    print("|---|---:|---:|---:|---:|")
    for name in ("aggregate", "aggregate_10k"):
        r = by.get(name)
        if r:
            s = r["summary"]
            print(
                f"| {name} | {s.get('windows', 0):,} | {s.get('out', 0):,} | {s.get('state_rows', 0):,} "
                f"| {s.get('state_bytes', 0) / 1e6:.2f} |"
            )


def report(results_path, criterion_dir, n, png):
    n = int(n)
    rows = [json.loads(line) for line in open(results_path)]
    # The profiles step: a clean build of each profile (build_P) and the transform it gives (transform_P).
    profiles = [r["name"].removeprefix("build_") for r in rows if r["name"].startswith("build_")]
    of_profiles = {f"build_{p}" for p in profiles} | {f"transform_{p}" for p in profiles}
    steps = [
        r
        for r in rows
        if not r["name"].startswith(("rt", "dag_", "cores_", "floor_", "size_", "now_", "then_", "against_"))
        and r["name"] not in of_profiles
    ]
    sizes = {r["name"].removeprefix("size_"): r for r in rows if r["name"].startswith("size_")}
    floor = merge([r for r in rows if r["name"].startswith("floor_")], n)
    realtime = [r for r in rows if r["name"].startswith("rt")]
    cores_used = [r for r in rows if r["name"].startswith("cores_")]
    dag = [r for r in rows if r["name"].startswith("dag_")]

    batch = merge(steps, n)
    before = reference()

    # A run of some steps (BENCH_STEPS) shows only the tables of what it ran.
    print(f"## rtds benchmark, {n:,} records\n" if batch else "## rtds benchmark\n")
    if batch:
        print("Each step and its baseline ran in A-B-B-A order; the figures are the mean of its runs.\n")
        print("| step | runs | records/s | MB/s | wall s | CPU s | peak RSS MB | vs baseline |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in batch:
        ratio = ""
        for other in batch:
            if other.get("baseline_of") == r["name"]:
                ratio = f"{r['rate'] / other['rate']:.0%} of {other['name']}"
        print(
            f"| {r['name']} | {r['runs']} | {r['rate']:,.0f} | {num(r['mbs'], '.1f')} | {r['wall_s']:.1f} "
            f"| {num(r['cpu_s'], '.1f')} | {num(r['peak_rss_mb'], '.0f')} | {ratio} |"
        )

    alo = next((r for r in batch if r["name"] == "transform"), None)
    eos = [r for r in batch if r["name"].startswith("transform_eos")]
    if alo and eos:
        print("\n### transform --exactly-once (the same input as transform, at least once)\n")
        print("| step | transaction every | records/s | of at least once | CPU s |")
        print("|---|---|---:|---:|---:|")
        for r in eos:
            every = r["name"].removeprefix("transform_eos_every_") if "_every_" in r["name"] else "100ms (default)"
            share = r["rate"] / alo["rate"]
            print(f"| {r['name']} | {every} | {r['rate']:,.0f} | {share:.0%} | {num(r['cpu_s'], '.1f')} |")

    avro_against_json(batch, sizes, n)
    delta_against_parquet(batch)
    aggregate_against_group_by(batch)

    if alo and floor:
        # Issue 19's floor: what librdkafka alone costs for the transform's Kafka work.
        print("\n### the transform's Kafka work alone (examples/kafka_floor.rs: each side apart)\n")
        print("| work | runs | CPU s | CPU µs a record |")
        print("|---|---:|---:|---:|")

        def per_record(r):
            return r["cpu_s"] * 1e6 / r["summary"].get("in", n)

        for r in floor:
            print(f"| {r['name']} | {r['runs']} | {r['cpu_s']:.2f} | {per_record(r):.2f} |")
        print(f"| both sides | | | {sum(per_record(r) for r in floor):.2f} |")
        print(f"| the whole transform | {alo['runs']} | {alo['cpu_s']:.2f} | {per_record(alo):.2f} |")

    if profiles:
        by_name = {r["name"]: r for r in rows}
        release = by_name.get("transform_release")
        print("\n### build profiles (a clean build of the rtds binary, then the transform of the same records)\n")
        print(
            "| profile | clean build min | build CPU min | binary MB "
            "| transform records/s | of release | CPU s | peak RSS MB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for p in profiles:
            b, t = by_name[f"build_{p}"], by_name.get(f"transform_{p}")
            speed = rate(t, n) if t else None
            share = f"{speed / rate(release, n):.0%}" if t and release else ""
            mb = b["summary"]["binary_bytes"] / 1e6
            cpu, rss = num(t and t["cpu_s"], ".1f"), num(t and t["peak_rss_mb"], ".0f")
            print(
                f"| {p} | {b['wall_s'] / 60:.1f} | {b['cpu_s'] / 60:.1f} | {mb:.0f} "
                f"| {num(speed, ',.0f')} | {share} | {cpu} | {rss} |"
            )

    if realtime:
        print("\n### real-time path (ingest at a fixed rate; transform and load --follow, Cassandra)\n")
        print("| step | records | CPU s | peak RSS MB | end-to-end p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in realtime:
            lat = r["summary"].get("latency_ms") or {}
            count = r["summary"].get("out", r["summary"].get("in", ""))
            print(
                f"| {r['name']} | {count:,} | {num(r['cpu_s'], '.1f')} | {num(r['peak_rss_mb'], '.0f')} "
                f"| {lat.get('p50', '')} | {lat.get('p95', '')} | {lat.get('p99', '')} | {lat.get('max', '')} |"
            )
        # Where the time goes: the load's per-hop percentiles (src/load/latency.rs).
        hops = [
            (r["name"], r["summary"]["latency_ms"]["hops"])
            for r in realtime
            if "hops" in (r["summary"].get("latency_ms") or {})
        ]
        if hops:
            names = ["ingest_to_transform", "transform_to_load", "load_to_store"]
            print("\n| load step | " + " | ".join(f"{h} p50 / p99 ms" for h in names) + " |")
            print("|---|" + "---:|" * len(names))
            for name, h in hops:
                cells = [f"{h[n]['p50']} / {h[n]['p99']}" if n in h else "" for n in names]
                print(f"| {name} | " + " | ".join(cells) + " |")

    goals = cost_tables(cores_used, realtime, before) if cores_used else []
    goals += against(rows, n)
    goals_table(goals, before)

    for r in dag:
        command = r["summary"].get("command_s")
        also = f" (the whole `airflow dags test` command, with its start-up: {command:.1f} s)" if command else ""
        print(
            f"\n`user_automation` DAG run (`airflow dags test`, 3 sinks), {r['summary']['in']:,} users: "
            f"{r['wall_s']:.1f} s, Airflow's run duration{also}"
        )

    if criterion_dir:
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
        # benches/transform.rs `paired`: the two sides timed in turns, for their ratio.
        paired = os.path.join(criterion_dir, "paired.json")
        if os.path.exists(paired):
            p = json.load(open(paired))
            low, high = p["quartiles"]
            print(
                f"\nTimed in turns ({p['pairs']} pairs): {p['faster']} is {p['median']:.2f}× as fast as "
                f"{p['than']} (quartiles {low:.2f}–{high:.2f})."
            )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    names = [r["name"] for r in batch]
    colors = ["tab:gray" if r.get("baseline_of") else "tab:blue" for r in batch]
    left.barh(names, [r["rate"] for r in batch], color=colors)
    left.set_xlabel("records/s (grey: bare baseline)")
    left.invert_yaxis()
    right.barh(names, [r["peak_rss_mb"] or 0 for r in batch], color=colors)
    right.set_xlabel("peak RSS MB")
    right.invert_yaxis()
    right.set_yticklabels([])
    fig.suptitle(f"rtds, {n:,} records per step")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def percentile(values, q):
    """The q-th percentile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))]


def soak(work, run, rate, minutes, window, reconciled):
    """The soak's table from WORK/rss ("seconds stage kb" lines), WORK/latency ("window ms" lines)
    and WORK/reconcile.out; the first window is warm-up."""
    span = int(window) * 60
    rss = {}
    for line in open(os.path.join(work, "rss")):
        secs, stage, kb = line.split()
        rss.setdefault(stage, {}).setdefault(int(secs) // span, []).append(int(kb))
    windows = max(w for by in rss.values() for w in by)
    first = 1 if windows >= 1 else 0
    out = [f"# Soak {run}: {rate} records/s for {minutes} min, windows of {window} min", ""]
    out += ["| stage | peak RSS, window after warm-up (MB) | peak RSS, last window (MB) | growth | within 10% |"]
    out += ["|---|---:|---:|---:|---|"]
    grew = False
    for stage, by in sorted(rss.items()):
        a, b = max(by.get(first, [0])) / 1024, max(by[windows]) / 1024
        growth = (b / a - 1) * 100 if a else 0.0
        grew |= growth > 10
        out.append(f"| {stage} | {a:.1f} | {b:.1f} | {growth:+.1f}% | {'yes' if growth <= 10 else '**no**'} |")
    lat = {}
    for line in open(os.path.join(work, "latency")):
        w, ms = line.split()
        lat.setdefault(int(w), []).append(float(ms))
    out += ["", "| window | rows | end-to-end p50 ms | p99 ms |", "|---:|---:|---:|---:|"]
    for w in sorted(lat):
        out.append(f"| {w + 1} | {len(lat[w]):,} | {percentile(lat[w], 0.5):.0f} | {percentile(lat[w], 0.99):.0f} |")
    report = last_json(os.path.join(work, "reconcile.out")) or {}
    stores = ", ".join(f"{k}: {v['found']} of {v['expected']} ids" for k, v in sorted(report.get("stores", {}).items()))
    ok = reconciled == "0" and report.get("ok") is True
    out += ["", f"reconcile: {'ok' if ok else 'FAILED'} ({stores})"]
    print("\n".join(out))
    if grew or not ok:
        sys.exit(1)


COMMANDS = {
    "record": record,
    "field": field,
    "csv": to_csv,
    "copied": copied,
    "metric": metric,
    "dag": dag,
    "cpu": cpu,
    "requests": requests,
    "cores": cores,
    "json": as_json,
    "report": report,
    "soak": soak,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
