//! The one JSON line each run prints last on stdout (Airflow pushes it to XCom).
//! Stages hand it over with `keep`; `main` prints it with `flush` once the run
//! is over and every client is closed, so no log line can come after it
//! (Airflow merges stderr into the task's output).

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

static SUMMARY: Mutex<Option<String>> = Mutex::new(None);

/// Keep `value` as the run's summary line.
pub fn keep<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(value)?;
    *SUMMARY.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
    Ok(())
}

/// Print the summary line, if a stage set one.
pub fn flush() {
    if let Some(line) = SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
