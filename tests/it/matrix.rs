//! The fault matrix of issue 39, after Kafka's own transactions system test
//! and Jepsen: on the three-broker cluster `make faults` starts, a stream
//! (ingest `--follow` at a fixed rate, an update stream: each id again and
//! again, a newer version each time) through two `--exactly-once` transform
//! replicas and two load replicas per store, each a static member of its group
//! kept running by a supervisor as compose's `restart: unless-stopped` does.
//! For each fault kind x target, three faults spaced by at least 20% of the
//! stream; after each, the pipeline must make progress within 60 s. At the
//! end, read back: nothing lost or duplicated in the read_committed output,
//! no id's versions out of order within a partition, each store holding every
//! id at its last version, and reconcile over the summaries there are. One
//! `MATRIX {json}` line per scenario; scripts/faults.sh makes the table.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

use crate::cluster::{TOPICS, Watch, busiest_partition, cluster_node, leader_of, on_the_cluster};
use crate::harness::*;
use crate::load::Target as Stores;

const RUN: Duration = Duration::from_secs(600);
/// How long a SIGSTOP holds its target.
const STOPPED: Duration = Duration::from_secs(20);
/// After each fault the pipeline makes progress within this (Kafka's system test asks the same).
const PROGRESS_WITHIN: Duration = Duration::from_secs(60);
/// Longer than this back to its lag before the fault, and the scenario fails as stuck.
const RECOVERY_WITHIN: Duration = Duration::from_secs(240);
const PARTITIONS: i32 = 12;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Term,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Broker,
    Transform,
    Load,
    Cassandra,
    Postgres,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Kill, Fault::Term, Fault::Stop];
    fn key(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Term => "term",
            Fault::Stop => "stop",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9",
            Fault::Term => "SIGTERM (a clean stop)",
            Fault::Stop => "SIGSTOP 20 s",
        }
    }
}

impl Target {
    const ALL: [Target; 5] = [Target::Broker, Target::Transform, Target::Load, Target::Cassandra, Target::Postgres];
    fn key(self) -> &'static str {
        match self {
            Target::Broker => "broker",
            Target::Transform => "transform",
            Target::Load => "load",
            Target::Cassandra => "cassandra",
            Target::Postgres => "postgres",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Target::Broker => "the busiest leader broker",
            Target::Transform => "a transform replica",
            Target::Load => "a load replica",
            Target::Cassandra => "Cassandra",
            Target::Postgres => "PostgreSQL",
        }
    }
}

/// A setting of the matrix from the environment (RTDS_IT_MATRIX_*), else `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(format!("RTDS_IT_MATRIX_{name}")).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The scenarios RTDS_IT_MATRIX picks: `kind/target` pairs, a kind or a target alone
/// (`kill/transform,stop,postgres`); all fifteen when unset.
fn chosen() -> Vec<(Fault, Target)> {
    let pick = std::env::var("RTDS_IT_MATRIX").unwrap_or_default();
    let all = Fault::ALL.into_iter().flat_map(|f| Target::ALL.into_iter().map(move |t| (f, t)));
    let wanted = |f: Fault, t: Target| {
        pick.trim().is_empty()
            || pick.split(',').map(str::trim).any(|p| {
                p == f.key() || p == t.key() || p.split_once('/').is_some_and(|(a, b)| a == f.key() && b == t.key())
            })
    };
    let scenarios: Vec<_> = all.filter(|&(f, t)| wanted(f, t)).collect();
    assert!(
        !scenarios.is_empty(),
        "RTDS_IT_MATRIX={pick:?} picks no scenario (kinds kill, term, stop; targets broker, transform, load, cassandra, postgres)"
    );
    scenarios
}

/// The fault matrix: every scenario chosen, its figures printed as it ends;
/// fails at the end naming each scenario that failed.
#[test]
#[ignore = "needs the three-broker cluster of `make faults`; runs for about an hour"]
fn cluster_fault_matrix_loses_duplicates_and_reorders_nothing_and_keeps_each_ids_last_version() {
    on_the_cluster();
    let mut failed = Vec::new();
    for (fault, target) in chosen() {
        eprintln!("matrix: {} of {}", fault.name(), target.name());
        let outcome = std::panic::catch_unwind(|| scenario(fault, target));
        if let Err(e) = outcome {
            let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failed.push(format!("{}/{}: {}", fault.key(), target.key(), why.unwrap_or_default()));
        }
    }
    assert!(failed.is_empty(), "{} scenario(s) failed:\n{}", failed.len(), failed.join("\n"));
}

/// One stage process, restarted whenever it exits, as compose restarts a
/// service: the same group instance id and transactional id each time.
struct Replica {
    name: String,
    make: Box<dyn Fn() -> Command + Send>,
    child: Option<Child>,
    /// Exits the scenario asked for (a kill -9, a SIGTERM), not yet seen.
    planned: u32,
    /// Exits nobody asked for, each with the last line its process wrote.
    crashes: Vec<String>,
    /// What each ended incarnation printed.
    ended: Vec<Output>,
    started: u32,
}

impl Replica {
    fn new(name: String, make: impl Fn() -> Command + Send + 'static) -> Self {
        let mut r = Self {
            name,
            make: Box::new(make),
            child: None,
            planned: 0,
            crashes: Vec::new(),
            ended: Vec::new(),
            started: 0,
        };
        r.start();
        r
    }

    fn start(&mut self) {
        self.child = Some(spawn(&mut (self.make)()));
        self.started += 1;
    }

    /// Restart the process if it exited; whether it had.
    fn tend(&mut self, restart: bool) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        if child.try_wait().expect("checking a replica").is_none() {
            return false;
        }
        let out = wait_child(self.child.take().unwrap(), Duration::from_secs(5));
        if self.planned > 0 {
            self.planned -= 1;
        } else {
            let last = stderr(&out).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_owned();
            eprintln!("matrix: {} exited unasked ({}): {last}", self.name, out.status);
            self.crashes.push(last);
        }
        self.ended.push(out);
        if restart {
            self.start();
        }
        true
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running replica").id()
    }

    /// Each ended incarnation's summary; `None` when one left none (killed with -9).
    fn summaries(&self) -> Option<Vec<String>> {
        self.ended.iter().map(summary_line).collect()
    }
}

/// The summary line a process printed last, if any.
fn summary_line(out: &Output) -> Option<String> {
    stdout(out).lines().rev().find(|l| l.starts_with('{')).map(str::to_owned)
}

/// The replicas of a scenario under a supervisor thread.
struct Fleet {
    replicas: Arc<Mutex<Vec<Replica>>>,
    stop: Arc<AtomicBool>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    fn start(replicas: Vec<Replica>) -> Self {
        let replicas = Arc::new(Mutex::new(replicas));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (replicas.clone(), stop.clone());
        let supervisor = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for replica in r.lock().unwrap().iter_mut() {
                    replica.tend(true);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { replicas, stop, supervisor: Some(supervisor) }
    }

    /// Signal replica `i` (`kill -SIG`); a kill or a stop is planned, so not counted as a crash.
    fn signal(&self, i: usize, sig: &str) -> u32 {
        let mut replicas = self.replicas.lock().unwrap();
        let r = &mut replicas[i];
        if matches!(sig, "KILL" | "TERM") {
            r.planned += 1;
        }
        let pid = r.pid();
        signal(&pid.to_string(), sig);
        r.started
    }

    /// Wait until replica `i` runs again after its incarnation `was` ended.
    fn restarted(&self, i: usize, was: u32) {
        wait_for("the replica restarted", RUN, || (self.replicas.lock().unwrap()[i].started > was).then_some(()));
    }

    /// SIGTERM every replica and wait for each to exit; the supervisor stops first.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.supervisor.take().unwrap().join().unwrap();
        let mut replicas = self.replicas.lock().unwrap();
        for r in replicas.iter_mut() {
            // One that exited on its own since the supervisor's last look is not restarted.
            if !r.tend(false) {
                r.planned += 1;
                signal(&r.pid().to_string(), "TERM");
            }
        }
        let deadline = Instant::now() + RUN;
        for r in replicas.iter_mut() {
            while r.child.is_some() {
                assert!(Instant::now() < deadline, "{} did not stop", r.name);
                r.tend(false);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut replicas) = self.replicas.lock() {
            for c in replicas.iter_mut().filter_map(|r| r.child.as_mut()) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// `kill -SIG PID` (a process group with `-PID`).
fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg("--").arg(pid).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// A stack service's process (group), as scripts/stack.sh's pid file names it.
fn service_pid(name: &str) -> String {
    let dir = std::env::var("RTDS_STACK_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.stack").into());
    let pid = std::fs::read_to_string(format!("{dir}/{name}/{name}.pid")).expect("the service's pid file");
    pid.trim().to_owned()
}

/// One committed-offsets and lag reading of the stages' groups.
#[derive(Clone)]
struct Sample {
    at: Instant,
    /// Per group (transform, load into Cassandra, load into PostgreSQL): the sum of its committed offsets.
    committed: [i64; 3],
    /// Per group: records not committed yet (`None`: a broker did not answer).
    lag: [Option<i64>; 3],
}

/// A thread reading the stages' committed offsets and the topics' ends every `SAMPLE_EVERY`.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(groups: [(String, String); 3]) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, s) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // read_uncommitted: librdkafka would otherwise wait out an open transaction's "unstable" offsets.
            let client = |group: &str| -> BaseConsumer {
                rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", brokers())
                    .set("group.id", group)
                    .set("isolation.level", "read_uncommitted")
                    .create()
                    .unwrap()
            };
            let clients: Vec<BaseConsumer> = groups.iter().map(|(g, _)| client(g)).collect();
            let ends = client(&unique("it_matrix_ends"));
            // What the sampler could not read, said once every 10 s at most (a broker down fails many reads).
            let mut said = Instant::now() - Duration::from_secs(10);
            let mut warn = |what: String| {
                if said.elapsed() >= Duration::from_secs(10) {
                    eprintln!("matrix: sampler: {what} (the next 10 s of these unsaid)");
                    said = Instant::now();
                }
            };
            let mut committed = [0; 3];
            let mut last_end: HashMap<(usize, i32), i64> = HashMap::new();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                // A group whose offsets cannot be read now keeps its last reading.
                let mut sample = Sample { at: t, committed, lag: [None; 3] };
                for (i, (c, (_, topic))) in clients.iter().zip(&groups).enumerate() {
                    let mut tpl = rdkafka::TopicPartitionList::new();
                    for p in 0..PARTITIONS {
                        tpl.add_partition(topic, p);
                    }
                    let at = match c.committed_offsets(tpl, Duration::from_secs(2)) {
                        Ok(at) => at,
                        Err(e) => {
                            warn(format!("committed offsets of {}: {e}", groups[i].0));
                            continue;
                        }
                    };
                    let offset = |p| match at.find_partition(topic, p).map(|e| e.offset()) {
                        Some(rdkafka::Offset::Offset(o)) => o,
                        _ => 0,
                    };
                    sample.committed[i] = (0..PARTITIONS).map(offset).sum();
                    // A partition's end that cannot be read now (its leader down, a slow answer) is its last.
                    let behind: Option<Vec<i64>> = (0..PARTITIONS)
                        .map(|p| {
                            let end = ends.fetch_watermarks(topic, p, Duration::from_secs(2));
                            if let Err(e) = &end {
                                warn(format!("the end of {topic}/{p}: {e}"));
                            }
                            let end = end.ok().map(|(_, hi)| hi);
                            let known = end.or(last_end.get(&(i, p)).copied());
                            last_end.insert((i, p), known?);
                            // An end read before a commit seen now can be behind it: never below 0.
                            known.map(|hi| (hi - offset(p)).max(0))
                        })
                        .collect();
                    sample.lag[i] = behind.map(|b| b.into_iter().sum());
                }
                committed = sample.committed;
                out.lock().unwrap().push(sample);
                std::thread::sleep(SAMPLE_EVERY.saturating_sub(t.elapsed()));
            }
        });
        Self { samples, stop, thread: Some(thread) }
    }

    fn last(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().cloned()
    }

    /// The first sample after `from` for which `done` holds, within `within`.
    fn first_after(&self, from: Instant, within: Duration, done: impl Fn(&Sample) -> bool) -> Option<Instant> {
        let deadline = from + within;
        loop {
            if let Some(s) = self.samples.lock().unwrap().iter().find(|s| s.at >= from && done(s)) {
                return Some(s.at);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Kills a process if the scenario fails before it is stopped (the stream would run on).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}

/// One fault: when it began and ended, the stages' committed offsets at its
/// end, and how long from its end until every stage's lag was back.
struct Bounce {
    begun: Instant,
    over: Instant,
    committed: [i64; 3],
    recovery: Option<Duration>,
}

impl Bounce {
    /// From the fault's end to the first sample with every stage committed
    /// further and the first record in the output, whichever came later.
    fn progress(&self, samples: &[Sample], arrivals: &[Instant]) -> Option<Duration> {
        let committed = samples
            .iter()
            .find(|s| s.at >= self.over && s.committed.iter().zip(self.committed).all(|(&now, then)| now > then))?;
        let arrived = arrivals.get(arrivals.partition_point(|&t| t < self.over))?;
        Some(committed.at.max(*arrived) - self.over)
    }
}

/// Records in the raw topic at `t`, by the last sample then (the transform's committed offsets and lag).
fn raw_records(samples: &[Sample], t: Instant) -> i64 {
    samples.iter().take_while(|s| s.at <= t).filter_map(|s| Some(s.committed[0] + s.lag[0]?)).last().unwrap_or(0)
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)
}

/// An id and its version, as the generator writes it into the email (`+v<N>@`, none for the first).
fn version_of(payload: &[u8]) -> (String, u64) {
    let v: Value = serde_json::from_slice(payload).expect("a JSON record");
    let id = v["login"]["uuid"].as_str().or(v["id"].as_str()).expect("an id").to_owned();
    (id, email_version(v["email"].as_str().expect("an email")))
}

fn email_version(email: &str) -> u64 {
    email.split_once("+v").and_then(|(_, rest)| rest.split('@').next()?.parse().ok()).unwrap_or(0)
}

fn scenario(fault: Fault, target: Target) {
    let rate = setting("RATE", 500);
    let ids = setting("IDS", 500);
    let spacing = Duration::from_secs(setting("SPACING_S", 10));
    let tag = format!("it_matrix_{}_{}", fault.key(), target.key());
    let (raw, created, dlq) = (unique(&format!("{tag}_raw")), unique(&format!("{tag}_c")), unique(&format!("{tag}_d")));
    let _stores = stores_shared();
    let stores = Arc::new(Stores::new(&tag));
    let groups = [unique(&format!("{tag}_t")), unique(&format!("{tag}_lc")), unique(&format!("{tag}_lp"))];

    // The stream first: it makes the raw topic the transform replicas subscribe to.
    let ingest = spawn(
        rtds()
            .args(["ingest", "--source", "generate", "--follow", "--rate", &format!("{rate}/s"), "--seed", "39"])
            .args(["--update-ids", &ids.to_string(), "--topic", &raw])
            .args(TOPICS),
    );
    let _ingest = KillOnPanic(ingest.id());
    wait_for("the raw topic", RUN, || (topic_len(&raw) > 0).then_some(()));
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let (raw, created, dlq, group) = (raw.clone(), created.clone(), dlq.clone(), groups[0].clone());
        let id = unique(&format!("{tag}_t{name}"));
        replicas.push(Replica::new(format!("transform {name}"), move || {
            let mut cmd = rtds();
            cmd.args(["transform", "--follow", "--exactly-once", "--input-topic", &raw, "--output-topic", &created])
                .args(["--dlq-topic", &dlq, "--group", &group, "--group-instance-id", &id])
                .args(TOPICS)
                .env("RTDS_TRANSACTIONAL_ID", &id);
            cmd
        }));
    }
    for (sink, group) in [("cassandra", &groups[1]), ("postgres", &groups[2])] {
        for name in ["a", "b"] {
            let (stores, created, dlq, group) = (stores.clone(), created.clone(), dlq.clone(), group.clone());
            let id = unique(&format!("{tag}_l{name}"));
            replicas.push(Replica::new(format!("load {sink} {name}"), move || {
                let mut cmd = stores.load(sink, &created, &group);
                cmd.args(["--follow", "--dlq-topic", &dlq, "--group-instance-id", &id]).args(TOPICS);
                cmd
            }));
        }
    }
    let mut fleet = Fleet::start(replicas);
    // The sampler's client learns of the topics once: both must be there.
    wait_for("the output topic", RUN, || (topic_len(&created) > 0).then_some(()));
    let topics = [raw.clone(), created.clone(), created.clone()];
    let sampler = Sampler::start(std::array::from_fn(|i| (groups[i].clone(), topics[i].clone())));
    let watch = Watch::start(&created);
    wait_for("every stage committing", RUN, || {
        sampler.last().is_some_and(|s| s.committed.iter().all(|&c| c > 0)).then_some(())
    });
    let streaming = Instant::now();
    std::thread::sleep(spacing);

    // Between two faults at least a fifth of the stream's records.
    let mut bounces: Vec<Bounce> = Vec::new();
    let (mut longest, mut gap) = (Duration::ZERO, spacing);
    for k in 0..3 {
        let before = sampler.last().expect("a sample");
        let begun = Instant::now();
        inflict(fault, target, k, &fleet, &raw, &groups[0]);
        let over = Instant::now();
        longest = longest.max(over - begun);
        let at_end = sampler.last().expect("a sample");
        eprintln!(
            "matrix: fault {} over after {:.1} s, lag before {:?}",
            k + 1,
            (over - begun).as_secs_f64(),
            before.lag
        );
        // Recovered: every stage's lag back to where it was before, or within a second of the stream.
        let caught_up = sampler.first_after(over, RECOVERY_WITHIN, |s| {
            s.lag.iter().zip(before.lag).all(|(now, then)| now.is_some_and(|n| n <= then.unwrap_or(0).max(rate as i64)))
        });
        eprintln!("matrix: the lag back after {:?} s", secs(caught_up.map(|t| t - over)));
        bounces.push(Bounce { begun, over, committed: at_end.committed, recovery: caught_up.map(|t| t - over) });
        // The stream is what it sent so far, the gaps left (this one as long as the next), the
        // faults left (each as long as the longest yet) and the last wait: a gap a fifth of it
        // all is a third of the rest after the first fault, a quarter after the second; 30% more
        // as a margin, and never shorter than the gap before.
        let so_far = sampler.last().and_then(|s| Some(s.committed[0] + s.lag[0]?)).unwrap_or(0);
        let rest = Duration::from_secs_f64(so_far as f64 / rate as f64) + longest * (2 - k.min(2)) as u32 + spacing;
        gap = match k {
            0 => spacing.max(rest.mul_f64(1.3 / 3.0)),
            1 => gap.max(rest.mul_f64(1.3 / 4.0)),
            _ => spacing,
        };
        std::thread::sleep((over + gap).saturating_duration_since(Instant::now()));
    }

    // The stream ends; everything it sent reaches the output and both stores.
    terminate(&ingest);
    let ingested = wait_child(ingest, RUN);
    let n = summary(&ingested)["out"].as_u64().expect("ingest's count") as usize;
    let ended = Instant::now();
    wait_for("the whole stream in the output", RUN, || (watch.count() >= n).then_some(()));
    // Caught up: each load's lag no more than a transaction marker a partition.
    wait_for("the loads caught up", RUN, || {
        std::thread::sleep(Duration::from_secs(1));
        sampler.last().filter(|s| s.lag[1..].iter().all(|l| l.is_some_and(|l| l <= PARTITIONS as i64))).map(|_| ())
    });
    fleet.stop();
    let samples = sampler.finish();
    let seen = watch.finish();

    let figures = final_state(&raw, &created, &stores);
    let (scope, reconciled) = reconcile(&fleet, &ingested);
    let dead_letters = topic_len(&dlq);
    delete_topics(&[&raw, &created, &dlq]);
    let replicas = fleet.replicas.lock().unwrap();
    let crashes: Vec<String> =
        replicas.iter().flat_map(|r| r.crashes.iter().map(|c| format!("{}: {c}", r.name))).collect();
    // Starts over inside a process, as its summary counts them (`stage::follow_through`).
    let started_over: u64 = replicas
        .iter()
        .flat_map(|r| r.ended.iter())
        .filter_map(summary_line)
        .map(|l| serde_json::from_str::<Value>(&l).ok().and_then(|v| v["restarts"].as_u64()).unwrap_or(0))
        .sum();
    // Progress per stage, each group's committed offsets and the output's arrivals.
    let mut output_gap = seen.longest_gap(streaming, ended);
    for g in 0..3 {
        let during: Vec<&Sample> = samples.iter().filter(|s| s.at >= streaming && s.at <= ended).collect();
        let mut last = (streaming, during.first().map_or(0, |s| s.committed[g]));
        for s in during {
            if s.committed[g] != last.1 {
                output_gap = output_gap.max(s.at - last.0);
                last = (s.at, s.committed[g]);
            }
        }
        output_gap = output_gap.max(ended.saturating_duration_since(last.0));
    }
    let peak_lag = samples.iter().flat_map(|s| s.lag.iter().flatten()).max().copied().unwrap_or(0);
    let progress: Vec<Option<Duration>> = bounces.iter().map(|b| b.progress(&samples, &seen.arrivals)).collect();
    // The slowest of the three; `None` if any was not measured.
    let slowest = |all: Vec<Option<Duration>>| all.into_iter().try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)));
    // The stream's records between one fault's end and the next's start, a share of all.
    let spacing_share: Vec<f64> = bounces
        .windows(2)
        .map(|w| (raw_records(&samples, w[1].begun) - raw_records(&samples, w[0].over)) as f64 / n as f64)
        .collect();
    let line = json!({
        "fault": fault.name(), "target": target.name(), "records": n, "ids": ids,
        "lost": figures.lost, "duplicated": figures.duplicated, "out_of_order": figures.out_of_order,
        "stale": figures.stale, "longest_gap_s": secs(Some(output_gap)),
        "progress_s": secs(slowest(progress.clone())),
        "recovery_s": secs(slowest(bounces.iter().map(|b| b.recovery).collect())), "peak_lag": peak_lag, "restarts": crashes.len(), "started_over": started_over,
        "reconcile": if reconciled.is_ok() { scope.clone() } else { format!("{scope} FAILED") },
        "spacing": spacing_share.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>(),
    });
    eprintln!("MATRIX {line}");
    for c in &crashes {
        eprintln!("matrix: restarted after {c}");
    }
    assert_eq!(
        (figures.lost, figures.duplicated, figures.out_of_order, figures.stale),
        (0, 0, 0, 0),
        "lost, duplicated, out of order, stale: {line}"
    );
    assert_eq!(dead_letters, 0, "no dead letters");
    for (k, (b, p)) in bounces.iter().zip(&progress).enumerate() {
        assert!(
            p.is_some_and(|p| p <= PROGRESS_WITHIN),
            "no progress within {PROGRESS_WITHIN:?} after fault {}",
            k + 1
        );
        assert!(b.recovery.is_some(), "the lag not back within {RECOVERY_WITHIN:?} after fault {}", k + 1);
    }
    assert!(spacing_share.iter().all(|&s| s >= 0.2), "faults spaced by at least 20% of the stream: {spacing_share:?}");
    if let Err(e) = reconciled {
        panic!("reconcile ({scope}): {e}");
    }
}

/// The `k`-th fault of a scenario; returns once it is over (the target back or resumed).
fn inflict(fault: Fault, target: Target, k: usize, fleet: &Fleet, raw: &str, transform_group: &str) {
    match target {
        Target::Transform | Target::Load => {
            // Transform replicas are 0 and 1; loads 2 to 5, both stores' first replica, then a second.
            let i = if target == Target::Transform { k % 2 } else { [2, 4, 3][k % 3] };
            match fault {
                Fault::Stop => {
                    fleet.signal(i, "STOP");
                    std::thread::sleep(STOPPED);
                    fleet.signal(i, "CONT");
                }
                Fault::Kill | Fault::Term => {
                    let was = fleet.signal(i, if fault == Fault::Kill { "KILL" } else { "TERM" });
                    fleet.restarted(i, was);
                }
            }
        }
        Target::Broker => {
            let node = leader_of(raw, busiest_partition(raw, transform_group));
            eprintln!("matrix: broker {node}, the leader of the busiest partition");
            bounce(fault, &format!("kafka-node{node}"), || cluster_node("down", node), || cluster_node("up", node));
        }
        Target::Cassandra | Target::Postgres => {
            let service = target.key();
            bounce(fault, service, || stack(&["down", service]), || stack(&["up", service]));
        }
    }
}

/// A stack service's fault: kill -9 of its every process then a start, a clean
/// stop then a start, or its every process stopped for `STOPPED`.
fn bounce(fault: Fault, name: &str, down: impl Fn(), up: impl Fn()) {
    let tree = process_tree(service_pid(name).parse().expect("a pid"));
    let each = |sig: &str| {
        for pid in &tree {
            // One may have ended meanwhile (a PostgreSQL backend whose client left).
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
        }
    };
    match fault {
        Fault::Kill => {
            each("KILL");
            // Gone before it starts again: the stack script takes a live pid for a running service.
            let alive = || tree.iter().any(|pid| std::path::Path::new(&format!("/proc/{pid}/stat")).exists());
            wait_for("the killed service gone", RUN, || (!alive()).then_some(()));
            up();
        }
        Fault::Term => {
            down();
            up();
        }
        Fault::Stop => {
            each("STOP");
            std::thread::sleep(STOPPED);
            each("CONT");
        }
    }
}

/// `root` and every process under it. Not its process group: PostgreSQL's
/// backends each start a session of their own, and a stop of the group would
/// leave them serving.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The parent is the second field after the command's closing parenthesis.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|&&(_, pp)| pp == parent).map(|&(pid, _)| pid));
        i += 1;
    }
    tree
}

/// The final state against the input, read back.
struct Figures {
    /// Input records missing from the output, plus ids missing from each store.
    lost: usize,
    /// Records in the output more than once.
    duplicated: usize,
    /// Records in the output after a newer version of their id, in its partition.
    out_of_order: usize,
    /// Ids a store holds at other than their last version in the input (or holds and the input lacks).
    stale: usize,
}

fn final_state(raw: &str, created: &str, stores: &Stores) -> Figures {
    let mut input: HashMap<(String, u64), usize> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in read_all(raw, RUN) {
        let (id, v) = version_of(m.payload().expect("a raw record"));
        let newest = last.entry(id.clone()).or_insert(v);
        *newest = (*newest).max(v);
        *input.entry((id, v)).or_default() += 1;
    }
    let mut output: HashMap<(String, u64), usize> = HashMap::new();
    let mut newest_seen: HashMap<(i32, String), u64> = HashMap::new();
    let mut out_of_order = 0;
    for m in read_all(created, RUN) {
        let (id, v) = version_of(m.payload().expect("a clean row"));
        // read_all gives each partition in offset order.
        if let Some(prev) = newest_seen.insert((m.partition(), id.clone()), v)
            && prev >= v
        {
            out_of_order += 1;
        }
        *output.entry((id, v)).or_default() += 1;
    }
    let lost_output: usize = input.iter().map(|(k, n)| n.saturating_sub(output.get(k).copied().unwrap_or(0))).sum();
    let duplicated: usize = output.iter().map(|(k, n)| n.saturating_sub(input.get(k).copied().unwrap_or(0))).sum();
    let (mut lost, mut stale) = (lost_output, 0);
    for held in store_versions(stores) {
        lost += last.keys().filter(|id| !held.contains_key(*id)).count();
        stale += held.iter().filter(|(id, v)| last.get(*id) != Some(v)).count();
    }
    Figures { lost, duplicated, out_of_order, stale }
}

/// Per store (Cassandra, PostgreSQL): each id's version, from its row's email.
fn store_versions(stores: &Stores) -> [BTreeMap<String, u64>; 2] {
    use futures::TryStreamExt;
    let rt = runtime();
    let session = cassandra(&rt);
    let cql = format!("SELECT id, email FROM {}.created_users", stores.keyspace);
    let cassandra = rt.block_on(async {
        let pager = session.query_iter(cql, &[]).await.expect("reading Cassandra's rows");
        let rows = pager.rows_stream::<(uuid::Uuid, Option<String>)>().expect("id and email");
        rows.map_ok(|(id, email)| (id.to_string(), email_version(&email.unwrap_or_default())))
            .try_collect()
            .await
            .expect("reading Cassandra's rows")
    });
    let pg = postgres(&rt);
    let sql = format!("SELECT id::text, email FROM {}.created_users", stores.schema);
    let rows = rt.block_on(pg.query(&sql, &[])).expect("reading PostgreSQL's rows");
    let postgres = rows.iter().map(|r| (r.get::<_, String>(0), email_version(r.get::<_, &str>(1)))).collect();
    [cassandra, postgres]
}

/// Reconcile over the summaries there are: the whole chain when every
/// incarnation left one; else the part whose stages all did (a process killed
/// with -9 prints none), the final-state check above covering the rest.
fn reconcile(fleet: &Fleet, ingested: &Output) -> (String, Result<(), String>) {
    let replicas = fleet.replicas.lock().unwrap();
    let of = |prefix: &str| -> Option<Vec<String>> {
        let mut all = Vec::new();
        for r in replicas.iter().filter(|r| r.name.starts_with(prefix)) {
            all.extend(r.summaries()?);
        }
        Some(all)
    };
    let ingest = vec![stdout(ingested).lines().last().unwrap_or_default().to_owned()];
    let (scope, args, summaries): (&str, &[&str], Vec<String>) = match (of("transform"), of("load")) {
        (Some(t), Some(l)) => ("ingest..load", &[], [ingest, t, l].concat()),
        (None, Some(l)) => ("load", &["--from", "load"], l),
        (Some(t), None) => ("ingest..transform", &["--to", "transform"], [ingest, t].concat()),
        (None, None) => return ("none (no stage left every summary)".into(), Ok(())),
    };
    // On stdin: a --follow run's summary outgrows an argument (128 KiB), its spans split by transaction markers.
    let mut cmd = rtds();
    let mut child = spawn(cmd.arg("reconcile").args(args).stdin(std::process::Stdio::piped()));
    let mut stdin = child.stdin.take().expect("reconcile's stdin");
    std::io::Write::write_all(&mut stdin, summaries.join("\n").as_bytes()).expect("writing the summaries");
    drop(stdin);
    let out = wait_child(child, RUN);
    let result = if out.status.success() { Ok(()) } else { Err(format!("{}{}", stdout(&out), stderr(&out))) };
    (scope.to_owned(), result)
}
