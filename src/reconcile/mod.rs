//! `rtds reconcile`: proves one run's chain from its stages' JSON summaries.
//! From the summaries alone (`chain`): each stage accounts for every record it
//! took in, and each read every offset the stage before it produced. Then,
//! reading back: every dead letter a stage counted is in the DLQ topic with
//! its reason, and every row a load read and did not dead-letter is in its
//! store, by id (Cassandra and PostgreSQL queried by id, Parquet files read).
//! An aggregate's run, a branch beside the chain, is proved against the same
//! SQL as one batch `GROUP BY` over the records it read (`aggregate`).
//! A table on a terminal, one JSON line last; exit 1 names what is missing.

mod aggregate;
mod options;

pub use options::{ChainStage, ReconcileArgs};

pub mod chain;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result};
use rdkafka::message::Message;
use serde::Serialize;

use crate::delivery::Span;
use crate::error::usage;
use crate::kafka::ClientOpts;
use crate::registry::RegistryOpts;
use crate::sinks::{Held, Sink};
use chain::{Check, NAMED, Summary};

#[derive(Serialize)]
struct Report {
    stage: &'static str,
    ok: bool,
    /// The stages proved, `ingest..load` unless asked otherwise; `partial` when not the whole run.
    scope: String,
    partial: bool,
    checks: Vec<Check>,
    /// Per load: ids expected in the store, found there, missing, and (Parquet,
    /// whose files are append-only) ids held more than once.
    stores: BTreeMap<String, StoreFigures>,
}

#[derive(Debug, Default, Serialize)]
struct StoreFigures {
    store: String,
    /// Records of the load's input read back that it did not dead-letter.
    records: u64,
    expected: u64,
    found: u64,
    missing: u64,
    /// Ids the store holds as a version no record of this run carried (an earlier run's row).
    stale: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicated: Option<u64>,
}

pub async fn run(kafka: &ClientOpts, registry: &RegistryOpts, args: &ReconcileArgs) -> Result<()> {
    if args.from > args.to {
        return usage(format!("--from {} comes after --to {}", args.from.name(), args.to.name()));
    }
    let stages = read_summaries(args)?;
    let mut checks: Vec<Check> = stages.values().map(chain::accounts).collect();
    // An aggregate's run (ingest -> aggregate, a branch beside the chain) is proved on its own.
    let aggregates: Vec<&Summary> = stages.values().filter(|s| s.stage == "aggregate").collect();
    let branch = !aggregates.is_empty() && stages.values().all(|s| matches!(s.stage.as_str(), "ingest" | "aggregate"));
    for (i, a) in stages.values().filter(|s| s.stage == "ingest").flat_map(|i| aggregates.iter().map(move |a| (i, a))) {
        checks.push(read_gaps(kafka, args, chain::gaps(i, a, i.output().unwrap_or_default()))?);
    }
    let of = |stage: ChainStage| stages.values().filter(move |s| s.chain_stage() == stage.name()).collect::<Vec<_>>();
    if !branch {
        let scope: Vec<ChainStage> =
            ChainStage::ALL.into_iter().filter(|s| (args.from..=args.to).contains(s)).collect();
        for stage in ChainStage::ALL.into_iter().filter(|s| !scope.contains(s)) {
            if !of(stage).is_empty() {
                return usage(format!(
                    "a {} summary was given, but the chain checked is {}..{}",
                    stage.name(),
                    args.from.name(),
                    args.to.name()
                ));
            }
        }
        for pair in scope.windows(2) {
            let (up, down) = (of(pair[0]), of(pair[1]));
            for present in [&up, &down] {
                if present.is_empty() {
                    let missing = if up.is_empty() { pair[0] } else { pair[1] };
                    checks.push(Check::failed(
                        format!("{} -> {}", pair[0].name(), pair[1].name()),
                        format!("no {} summary: nothing proves this link of the chain", missing.name()),
                        Vec::new(),
                        1,
                    ));
                    break;
                }
            }
            for u in &up {
                for d in &down {
                    let topic = u.output().unwrap_or_default();
                    checks.push(read_gaps(kafka, args, chain::gaps(u, d, topic))?);
                }
            }
        }
        if scope.len() == 1 && of(scope[0]).is_empty() {
            checks.push(Check::failed(
                format!("{} summaries", scope[0].name()),
                format!("no {} summary to check", scope[0].name()),
                Vec::new(),
                1,
            ));
        }
    }
    let mut dead = HashMap::new();
    for s in stages.values() {
        // Ingest and replay send nothing to a DLQ.
        let reasons = if s.chain_stage() == "ingest" || s.stage == "replay" {
            BTreeMap::new()
        } else {
            let (check, sources, reasons) = dead_letters(kafka, args, s)?;
            checks.push(check);
            dead.insert(s.name(), sources);
            reasons
        };
        checks.push(dlq_budget(s, args.max_dlq_share, &reasons));
    }
    for a in &aggregates {
        checks.push(aggregate::windows(kafka, registry, args, a, &dead[&a.name()]).await?);
    }
    let mut stores = BTreeMap::new();
    for l in of(ChainStage::Load) {
        let (check, figures) = store_holds(kafka, args, l, &dead[&l.name()]).await?;
        checks.push(check);
        stores.insert(l.name(), figures);
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let partial = !branch && (args.from != ChainStage::Ingest || args.to != ChainStage::Load);
    let scope =
        if branch { "ingest..aggregate".to_owned() } else { format!("{}..{}", args.from.name(), args.to.name()) };
    if partial {
        tracing::warn!(scope, "checking part of the chain only, as asked (--from/--to)");
    }
    if std::io::stdout().is_terminal() {
        print_table(&checks);
    }
    for c in &checks {
        tracing::info!(ok = c.ok, "{}: {}", c.check, c.detail);
    }
    let why: Vec<String> = failed.iter().map(|c| describe(c)).collect();
    crate::summary::keep(&Report { stage: "reconcile", ok: why.is_empty(), scope, partial, checks, stores })?;
    if why.is_empty() { Ok(()) } else { anyhow::bail!("reconcile failed: {}", why.join("; ")) }
}

/// The link's check: a gap between the spans `down` read passes if it holds
/// no record (transaction markers, aborted records), read back to tell.
fn read_gaps(kafka: &ClientOpts, args: &ReconcileArgs, link: chain::Gaps) -> Result<Check> {
    let mut unread: Vec<(i32, i64)> = Vec::new();
    // One read a round, each holding at most one gap of a partition.
    let mut rounds: Vec<BTreeMap<i32, Span>> = Vec::new();
    for (p, gap) in &link.gaps {
        match rounds.iter_mut().find(|r| !r.contains_key(p)) {
            Some(round) => {
                round.insert(*p, *gap);
            }
            None => rounds.push(BTreeMap::from([(*p, *gap)])),
        }
    }
    for round in &rounds {
        tokio::task::block_in_place(|| {
            crate::kafka::read_spans(kafka, &link.topic, round, args.read_timeout, |m| {
                unread.push((m.partition(), m.offset()));
            })
        })
        .with_context(|| format!("reading back the offsets {} did not read", link.down))?;
    }
    if unread.is_empty() {
        let detail = format!("read all {} record(s) in {} partition(s)", link.produced, link.partitions);
        return Ok(Check::passed(link.check, detail));
    }
    unread.sort();
    let count = unread.len() as u64;
    let mut named: Vec<String> = Vec::new();
    let mut runs: Vec<(i32, i64, i64)> = Vec::new();
    for (p, o) in unread {
        match runs.last_mut() {
            Some((rp, _, last)) if *rp == p && *last + 1 == o => *last = o,
            _ => runs.push((p, o, o)),
        }
    }
    for (p, first, last) in runs.into_iter().take(NAMED) {
        named.push(format!("{}/{p}: {first}..={last}", link.topic));
    }
    let detail = format!("{} did not read {count} record(s) {} produced", link.down, link.up);
    Ok(Check::failed(link.check, detail, named, count))
}

/// How many of a stage's inputs went to the DLQ, against `--max-dlq-share`;
/// over it, the check names the most frequent reasons.
fn dlq_budget(s: &Summary, max: f64, reasons: &BTreeMap<String, u64>) -> Check {
    let check = format!("{}: dead letters within budget", s.name());
    let share = if s.received == 0 { 0.0 } else { s.dlq as f64 / s.received as f64 };
    let detail = format!("{} of {} record(s) ({:.2}%) went to the DLQ", s.dlq, s.received, share * 100.0);
    if share <= max {
        return Check::passed(check, format!("{detail}, at most {:.2}% allowed", max * 100.0));
    }
    let mut top: Vec<(&String, &u64)> = reasons.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let named: Vec<String> = top.iter().take(3).map(|(why, n)| format!("{n} x {why}")).collect();
    let detail = format!("{detail}, over --max-dlq-share {:.2}%; top reasons: {}", max * 100.0, named.join(" | "));
    Check::failed(check, detail, Vec::new(), s.dlq)
}

/// A failed check in one line: what, how many, the first few.
fn describe(c: &Check) -> String {
    let mut s = format!("{}: {}", c.check, c.detail);
    if !c.missing.is_empty() {
        let more = if c.missing_count as usize > c.missing.len() { ", …" } else { "" };
        s.push_str(&format!(" ({} missing: {}{more})", c.missing_count, c.missing.join(", ")));
    }
    s
}

fn print_table(checks: &[Check]) {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(5);
    println!("{:<width$}  result  detail", "check");
    for c in checks {
        println!("{:<width$}  {:<6}  {}", c.check, if c.ok { "ok" } else { "FAILED" }, describe_detail(c));
    }
}

fn describe_detail(c: &Check) -> String {
    if c.missing.is_empty() { c.detail.clone() } else { format!("{} ({})", c.detail, c.missing.join(", ")) }
}

/// The summaries from the arguments (or RTDS_SUMMARIES), else stdin; replicas
/// of one stage are merged.
fn read_summaries(args: &ReconcileArgs) -> Result<BTreeMap<String, Summary>> {
    let mut lines: Vec<String> = args.summaries.clone();
    if lines.iter().all(|l| l.trim().is_empty()) {
        lines = std::io::stdin().lock().lines().collect::<Result<_, _>>().context("reading summaries from stdin")?;
    } else if let Some(n) = lines.iter().position(|l| l.trim().is_empty()) {
        // `rtds reconcile "$i" "$t" "$l"` with a stage's summary lost (the stage killed).
        anyhow::bail!(
            "summary {} of {} is empty: a stage's summary is missing, so its link cannot be proved",
            n + 1,
            lines.len()
        );
    }
    let mut stages: BTreeMap<String, Summary> = BTreeMap::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let s: Summary = match serde_json::from_str(line) {
            Ok(s) => s,
            Err(e) => return usage(format!("not an rtds summary line ({e}): {}", clip(line, 80))),
        };
        if !matches!(s.stage.as_str(), "ingest" | "transform" | "aggregate" | "load" | "replay") {
            return usage(format!(
                "reconcile takes ingest, transform, aggregate, load and replay summaries, not {:?}",
                s.stage
            ));
        }
        if s.stage == "aggregate" && stages.contains_key(&s.name()) {
            return usage("reconcile takes one aggregate summary at a time");
        }
        if s.stage == "replay" && s.chain_stage() == "replay" {
            return usage("a replay summary is reconciled when the replay chose the stage it replayed to (--stage)");
        }
        match stages.get_mut(&s.name()) {
            Some(known) => known.merge(&s),
            None => {
                stages.insert(s.name(), s);
            }
        }
    }
    if stages.is_empty() {
        return usage("no summaries to reconcile: pass the stages' JSON summary lines as arguments or on stdin");
    }
    Ok(stages)
}

fn clip(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Where dead letters came from, (partition, offset) of the stage's input, and why.
type Sources = HashMap<(i32, i64), String>;

/// Dead letters by reason (the first 160 characters of it).
type Reasons = BTreeMap<String, u64>;

/// The records a stage dead-lettered, found in the DLQ ranges it produced:
/// the check that each one it counted is there with its reason, and the
/// sources (partition, offset) of those found.
fn dead_letters(kafka: &ClientOpts, args: &ReconcileArgs, s: &Summary) -> Result<(Check, Sources, Reasons)> {
    let check = format!("{}: dead letters in the DLQ", s.name());
    let (Some(dlq), Some(input)) = (&s.dlq_topic, &s.input_topic) else {
        return Ok((
            Check::failed(check, "the summary names no DLQ or input topic".into(), Vec::new(), s.dlq),
            Sources::new(),
            Reasons::new(),
        ));
    };
    let mut found = Sources::new();
    let mut reasons = Reasons::new();
    let mut without_reason = Vec::new();
    tokio::task::block_in_place(|| {
        crate::kafka::read_spans(kafka, dlq, &s.produced.of(dlq), args.read_timeout, |m| {
            let h = |name: &str| crate::kafka::header(m, name).map(|v| String::from_utf8_lossy(v).into_owned());
            if h("rtds-stage").as_deref() != Some(s.stage.as_str())
                || h("rtds-sink") != s.sink
                || h("rtds-source-topic").as_deref() != Some(input.as_str())
            {
                return;
            }
            let (Some(p), Some(o)) = (
                h("rtds-source-partition").and_then(|p| p.parse().ok()),
                h("rtds-source-offset").and_then(|o| o.parse().ok()),
            ) else {
                return;
            };
            if !s.consumed.contains(input, p, o) {
                return;
            }
            match h("rtds-error").filter(|e| !e.is_empty()) {
                Some(why) if !found.contains_key(&(p, o)) => {
                    *reasons.entry(clip(&why, 160)).or_default() += 1;
                    found.insert((p, o), why);
                }
                Some(_) => {}
                None => {
                    without_reason.push(format!("{dlq}/{}@{}", m.partition(), m.offset()));
                    found.insert((p, o), String::new());
                }
            }
        })
    })
    .with_context(|| format!("reading the dead letters of {} back", s.name()))?;
    let n = found.len() as u64;
    let check = if n != s.dlq {
        let detail = format!("counted {} dead letter(s), {n} in {dlq}", s.dlq);
        Check::failed(check, detail, Vec::new(), s.dlq.abs_diff(n))
    } else if !without_reason.is_empty() {
        let count = without_reason.len() as u64;
        Check::failed(check, format!("{count} dead letter(s) without a reason"), without_reason, count)
    } else {
        Check::passed(check, format!("{n} in {dlq}, each with its reason"))
    };
    Ok((check, found, reasons))
}

/// Every row `load` read and did not dead-letter is in its store, by id.
async fn store_holds(
    kafka: &ClientOpts,
    args: &ReconcileArgs,
    load: &Summary,
    dead: &Sources,
) -> Result<(Check, StoreFigures)> {
    let name = load.name();
    let check = format!("{name}: rows in the store");
    let (Some(input), Some(sink), Some(store)) = (&load.input_topic, &load.sink, &load.store) else {
        return usage(format!("the summary of {name} names no input topic, sink or store"));
    };
    // Per id, the ingest stamps of this run's versions of it, with how many records carried each
    // (a replayed record repeats one).
    let mut expected: HashMap<String, HashMap<Option<i64>, u64>> = HashMap::new();
    let mut records = 0u64;
    tokio::task::block_in_place(|| {
        crate::kafka::read_spans(kafka, input, &load.consumed.of(input), args.read_timeout, |m| {
            if dead.contains_key(&(m.partition(), m.offset()))
                || !load.consumed.contains(input, m.partition(), m.offset())
            {
                return;
            }
            records += 1;
            let id = match m.key() {
                Some(k) => String::from_utf8_lossy(k).into_owned(),
                None => m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            let stamp = crate::kafka::header(m, crate::kafka::INGESTED_AT)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(crate::row::stamp_millis);
            *expected.entry(crate::row::canonical(id)).or_default().entry(stamp).or_default() += 1;
        })
    })
    .with_context(|| format!("reading the rows {name} read back from {input}"))?;
    let Some(sink) = Sink::named(sink) else {
        return usage(format!("unknown sink {sink:?} in the summary of {name}"));
    };
    let ids: Vec<String> = expected.keys().cloned().collect();
    let Held { versions: found, duplicated, once } = sink.read_back(&args.sinks, store, &ids).await?;
    let mut missing: Vec<String> = expected.keys().filter(|id| !found.contains_key(*id)).cloned().collect();
    missing.sort();
    let held_at =
        |held: &[Option<i64>]| held.iter().flatten().max().map_or("none".to_owned(), |ms| describe_millis(*ms));
    // Held, but as a version no record of this run carried (an earlier run's row), or as an older
    // one than its last (an update reordered): the newest version held must be the run's newest.
    let mut stale: Vec<String> = expected
        .iter()
        .filter_map(|(id, stamps)| {
            let held = found.get(id)?;
            let checkable = !stamps.contains_key(&None);
            let ours = held.iter().any(|at| stamps.contains_key(at));
            let (newest, last) = (held.iter().flatten().max(), stamps.keys().flatten().max());
            let why = if !ours {
                "another run's version"
            } else if newest < last {
                "an older version than the run's last"
            } else {
                return None;
            };
            checkable.then(|| format!("{id} (held: ingested at {}, {why})", held_at(held)))
        })
        .collect();
    stale.sort();
    // A store that promises each record once (Delta) holds none of this run's twice.
    let mut twice: Vec<String> = expected
        .iter()
        .filter(|(id, stamps)| {
            once && found
                .get(*id)
                .is_some_and(|held| stamps.iter().any(|(at, n)| held.iter().filter(|h| *h == at).count() as u64 > *n))
        })
        .map(|(id, _)| id.clone())
        .collect();
    twice.sort();
    let figures = StoreFigures {
        store: store.clone(),
        records,
        expected: expected.len() as u64,
        found: (expected.len() - missing.len() - stale.len()) as u64,
        missing: missing.len() as u64,
        stale: stale.len() as u64,
        duplicated,
    };
    // Each offset is read back once: comparable unless the load read some twice.
    let written = load.received.saturating_sub(load.dlq + load.filtered);
    let check = if records != written && !load.consumed.reread(input) {
        let detail = format!("read back {records} record(s) of the {written} {name} took in and did not dead-letter");
        Check::failed(check, detail, Vec::new(), written.abs_diff(records))
    } else if !twice.is_empty() {
        let detail = format!("{} of {} id(s) held more than once in {store}", twice.len(), expected.len());
        let count = twice.len() as u64;
        twice.truncate(NAMED);
        Check::failed(check, detail, twice, count)
    } else if missing.is_empty() && stale.is_empty() {
        let detail =
            format!("all {} id(s) of {records} record(s) in {store}, each as this run wrote it", expected.len());
        Check::passed(check, detail)
    } else {
        let count = (missing.len() + stale.len()) as u64;
        let detail = format!(
            "{} of {} id(s) not in {store}, {} held as another run's version or an older one than the run's last",
            missing.len(),
            expected.len(),
            stale.len()
        );
        missing.extend(stale);
        missing.truncate(NAMED);
        Check::failed(check, detail, missing, count)
    };
    Ok((check, figures))
}

fn describe_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}
