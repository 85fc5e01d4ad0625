//! The one JSON line each run prints last on stdout (Airflow pushes it to XCom).

use std::io::Write;

use serde::Serialize;

/// Print `value` as one JSON line on stdout and flush.
pub fn print<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
