//! A fault-test hook, compiled only with the test-only feature `fault-injection` (never in a user's build).

use std::time::Duration;

/// For the fault tests only: `RTDS_FAULT_PAUSE_BEFORE_COMMIT=2s` pauses every
/// commit after its offsets are sent, so a test can kill the stage mid-commit.
pub(super) static PAUSE_BEFORE_COMMIT: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
    std::env::var("RTDS_FAULT_PAUSE_BEFORE_COMMIT").ok().and_then(|v| humantime::parse_duration(&v).ok())
});

/// For the fault tests only: `RTDS_FAULT_KILL_AT_<POINT>=n` kills the process
/// (SIGKILL, as `kill -9` does) the nth time it passes `point`, e.g.
/// `DELTA_COMMIT`: after a Delta commit, before the Kafka offsets are.
pub(crate) fn passing(point: &str) {
    static SEEN: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
    let Some(at) = std::env::var(format!("RTDS_FAULT_KILL_AT_{point}")).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let count = match seen.iter_mut().find(|(p, _)| p == point) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            seen.push((point.to_owned(), 1));
            1
        }
    };
    if count == at {
        eprintln!("fault hook: killing the process at {point} #{count}");
        // SAFETY: kill(2) on our own pid with a constant signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
