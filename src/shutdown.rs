//! SIGINT/SIGTERM become a flag the stages poll: stop taking new input, finish
//! what is in flight, commit, print the summary, exit 0.

use tokio::sync::watch;

/// Listen for SIGINT and SIGTERM; the receiver turns `true` at the first one.
pub fn listen() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            #[cfg(unix)]
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("signal received: finishing in-flight work, then exiting");
        let _ = tx.send(true);
    });
    rx
}
