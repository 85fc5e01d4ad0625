//! A fault-test hook, compiled only with the test-only feature `fault-injection` (never in a user's build).

use std::time::Duration;

/// For the fault tests only: `RTDS_FAULT_PAUSE_BEFORE_COMMIT=2s` pauses every
/// commit after its offsets are sent, so a test can kill the stage mid-commit;
/// with `RTDS_FAULT_PAUSE_AT_COMMIT=n`, only the nth (a pause past the
/// transaction's timeout: the coordinator aborts it, as when a process stalls).
pub(super) fn pause_before_commit() -> Option<Duration> {
    static PAUSE: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
        std::env::var("RTDS_FAULT_PAUSE_BEFORE_COMMIT").ok().and_then(|v| humantime::parse_duration(&v).ok())
    });
    let pause = (*PAUSE)?;
    match std::env::var("RTDS_FAULT_PAUSE_AT_COMMIT").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(at) => (times_passed("PAUSE_BEFORE_COMMIT") == at).then_some(pause),
        None => Some(pause),
    }
}

/// For the fault tests only: `RTDS_FAULT_KILL_AT_<POINT>=n` kills the process
/// (SIGKILL, as `kill -9` does) the nth time it passes `point`, e.g.
/// `DELTA_COMMIT`: after a Delta commit, before the Kafka offsets are.
pub(crate) fn passing(point: &str) {
    let Some(at) = std::env::var(format!("RTDS_FAULT_KILL_AT_{point}")).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    let count = times_passed(point);
    if count == at {
        eprintln!("fault hook: killing the process at {point} #{count}");
        // SAFETY: kill(2) on our own pid with a constant signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// How many times the process has come to `point`, this time included.
fn times_passed(point: &str) -> u64 {
    static SEEN: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    match seen.iter_mut().find(|(p, _)| p == point) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            seen.push((point.to_owned(), 1));
            1
        }
    }
}
