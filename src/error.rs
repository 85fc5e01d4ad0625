//! The one error kind a caller branches on: a usage or configuration mistake
//! (exit 2) as opposed to a runtime failure (exit 1).

/// A mistake in what the user asked for; `main` exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a usage error from a function returning `anyhow::Result`.
pub fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

/// Exit code for an error chain: 2 if a usage error is anywhere in it, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<UsageError>()) { 2 } else { 1 }
}
