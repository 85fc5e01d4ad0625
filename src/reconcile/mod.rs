//! `rtds reconcile`: proves one run's chain from its stages' JSON summaries.
//! From the summaries alone (`chain`): each stage accounts for every record it
//! took in, and each read every offset the stage before it produced. Then,
//! reading back: every dead letter a stage counted is in the DLQ topic with
//! its reason, and every row a load read and did not dead-letter is in its
//! store, by id (Cassandra and PostgreSQL queried by id, Parquet files read).
//! A table on a terminal, one JSON line last; exit 1 names what is missing.

pub mod chain;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result};
use rdkafka::message::Message;
use serde::Serialize;

use crate::cli::{GlobalOpts, ReconcileArgs};
use crate::error::usage;
use crate::sinks::{cassandra, parquet, postgres};
use chain::{Check, NAMED, Summary, within};

#[derive(Serialize)]
struct Report {
    stage: &'static str,
    ok: bool,
    checks: Vec<Check>,
    /// Per load: ids expected in the store, found there, missing, and (Parquet,
    /// whose files are append-only) ids held more than once.
    stores: BTreeMap<String, StoreFigures>,
}

#[derive(Debug, Default, Serialize)]
struct StoreFigures {
    store: String,
    expected: u64,
    found: u64,
    missing: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicated: Option<u64>,
}

pub async fn run(global: &GlobalOpts, args: &ReconcileArgs) -> Result<()> {
    let stages = read_summaries(args)?;
    let mut checks: Vec<Check> = stages.values().map(chain::accounts).collect();
    let ingest = stages.get("ingest");
    let transform = stages.get("transform");
    let loads: Vec<&Summary> = stages.values().filter(|s| s.stage == "load").collect();
    if let (Some(i), Some(t)) = (ingest, transform) {
        checks.push(chain::covers(i, t, i.output().unwrap_or_default()));
    }
    if let Some(t) = transform {
        for l in &loads {
            checks.push(chain::covers(t, l, t.output_topic.as_deref().unwrap_or_default()));
        }
    }
    let mut dead = HashMap::new();
    for s in stages.values().filter(|s| s.stage != "ingest") {
        let (check, sources) = dead_letters(global, args, s)?;
        checks.push(check);
        dead.insert(s.name(), sources);
    }
    let mut stores = BTreeMap::new();
    for l in loads {
        let (check, figures) = store_holds(global, args, l, &dead[&l.name()]).await?;
        checks.push(check);
        stores.insert(l.name(), figures);
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if std::io::stdout().is_terminal() {
        print_table(&checks);
    }
    for c in &checks {
        tracing::info!(ok = c.ok, "{}: {}", c.check, c.detail);
    }
    let why: Vec<String> = failed.iter().map(|c| describe(c)).collect();
    crate::summary::keep(&Report { stage: "reconcile", ok: why.is_empty(), checks, stores })?;
    if why.is_empty() { Ok(()) } else { anyhow::bail!("reconcile failed: {}", why.join("; ")) }
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
    }
    let mut stages: BTreeMap<String, Summary> = BTreeMap::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let s: Summary = match serde_json::from_str(line) {
            Ok(s) => s,
            Err(e) => return usage(format!("not an rtds summary line ({e}): {}", clip(line))),
        };
        if !matches!(s.stage.as_str(), "ingest" | "transform" | "load") {
            return usage(format!("reconcile takes ingest, transform and load summaries, not {:?}", s.stage));
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

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The records a stage dead-lettered, found in the DLQ ranges it produced:
/// the check that each one it counted is there with its reason, and the
/// sources (partition, offset) of those found.
fn dead_letters(global: &GlobalOpts, args: &ReconcileArgs, s: &Summary) -> Result<(Check, HashSet<(i32, i64)>)> {
    let check = format!("{}: dead letters in the DLQ", s.name());
    let (Some(dlq), Some(input)) = (&s.dlq_topic, &s.input_topic) else {
        return Ok((
            Check::failed(check, "the summary names no DLQ or input topic".into(), Vec::new(), s.dlq),
            HashSet::new(),
        ));
    };
    let consumed = s.consumed.of(input);
    let mut found = HashSet::new();
    let mut without_reason = Vec::new();
    tokio::task::block_in_place(|| {
        crate::kafka::read_spans(global, dlq, &s.produced.of(dlq), args.read_timeout, |m| {
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
            if !within(&consumed, p, o) {
                return;
            }
            if h("rtds-error").is_none_or(|e| e.is_empty()) {
                without_reason.push(format!("{dlq}/{}@{}", m.partition(), m.offset()));
            }
            found.insert((p, o));
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
    Ok((check, found))
}

/// Every row `load` read and did not dead-letter is in its store, by id.
async fn store_holds(
    global: &GlobalOpts,
    args: &ReconcileArgs,
    load: &Summary,
    dead: &HashSet<(i32, i64)>,
) -> Result<(Check, StoreFigures)> {
    let name = load.name();
    let check = format!("{name}: rows in the store");
    let (Some(input), Some(sink), Some(store)) = (&load.input_topic, &load.sink, &load.store) else {
        return usage(format!("the summary of {name} names no input topic, sink or store"));
    };
    let mut expected: HashSet<String> = HashSet::new();
    tokio::task::block_in_place(|| {
        crate::kafka::read_spans(global, input, &load.consumed.of(input), args.read_timeout, |m| {
            if dead.contains(&(m.partition(), m.offset())) {
                return;
            }
            let id = match m.key() {
                Some(k) => String::from_utf8_lossy(k).into_owned(),
                None => m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            expected.insert(canonical(id));
        })
    })
    .with_context(|| format!("reading the rows {name} read back from {input}"))?;
    let (found, duplicated) = ids_in_store(args, sink, store, &expected).await?;
    let mut missing: Vec<String> = expected.iter().filter(|id| !found.contains(*id)).cloned().collect();
    missing.sort();
    let figures = StoreFigures {
        store: store.clone(),
        expected: expected.len() as u64,
        found: (expected.len() - missing.len()) as u64,
        missing: missing.len() as u64,
        duplicated,
    };
    let check = if missing.is_empty() {
        Check::passed(check, format!("all {} id(s) in {store}", expected.len()))
    } else {
        let count = missing.len() as u64;
        missing.truncate(NAMED);
        Check::failed(check, format!("{count} of {} id(s) not in {store}", expected.len()), missing, count)
    };
    Ok((check, figures))
}

/// Which of `expected` the store holds, and (Parquet) how many ids it holds more than once.
async fn ids_in_store(
    args: &ReconcileArgs,
    sink: &str,
    store: &str,
    expected: &HashSet<String>,
) -> Result<(HashSet<String>, Option<u64>)> {
    let uuids = || expected.iter().filter_map(|id| uuid::Uuid::try_parse(id).ok()).collect::<Vec<_>>();
    let as_text = |found: HashSet<uuid::Uuid>| found.into_iter().map(|u| u.to_string()).collect();
    match sink {
        "cassandra" => {
            let table = qualified(store)?;
            let session = cassandra::connect(&args.cassandra).await?;
            Ok((as_text(cassandra::present(&session, &table, &uuids()).await?), None))
        }
        "postgres" => {
            let table = qualified(store)?;
            let client = postgres::connect(&args.postgres).await?;
            Ok((as_text(postgres::present(&client, &table, &uuids()).await?), None))
        }
        "parquet" => {
            let ids = parquet::ids(std::path::Path::new(store))?;
            let mut seen: HashMap<String, u64> = HashMap::new();
            for id in ids {
                *seen.entry(canonical(id)).or_default() += 1;
            }
            let duplicated = seen.values().filter(|n| **n > 1).count() as u64;
            Ok((seen.into_keys().collect(), Some(duplicated)))
        }
        other => usage(format!("unknown sink {other:?} in a load summary")),
    }
}

/// A UUID in its one text form (lower case, hyphenated); anything else as it is.
fn canonical(id: String) -> String {
    uuid::Uuid::try_parse(&id).map_or(id, |u| u.to_string())
}

/// `a.b`, both validated identifiers (the summary is input, never trusted in a statement).
fn qualified(store: &str) -> Result<String> {
    let parts: Vec<&str> = store.split('.').collect();
    match parts[..] {
        [a, b] if crate::names::parse_identifier(a).is_ok() && crate::names::parse_identifier(b).is_ok() => {
            Ok(store.to_owned())
        }
        _ => usage(format!("invalid store {store:?} in a load summary: expected keyspace.table or schema.table")),
    }
}
