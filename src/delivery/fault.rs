//! A fault-test hook, compiled only with the test-only feature `fault-injection` (never in a user's build).

use std::time::Duration;

/// For the fault tests only: `RTDS_FAULT_PAUSE_BEFORE_COMMIT=2s` pauses every
/// commit after its offsets are sent, so a test can kill the stage mid-commit.
pub(super) static PAUSE_BEFORE_COMMIT: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
    std::env::var("RTDS_FAULT_PAUSE_BEFORE_COMMIT").ok().and_then(|v| humantime::parse_duration(&v).ok())
});
