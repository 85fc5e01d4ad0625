//! A `--follow` stage that fails after it started (a Kafka transaction fenced
//! or timed out while a broker was away, records that timed out) starts over
//! in process: a new consumer and producer from the last commit, as a restart
//! of the process would, without leaving its summary unwritten or waiting for
//! a supervisor. Nothing committed is redone and nothing uncommitted is lost:
//! the aborted transaction's records are read again from the group's offsets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Totals;

/// At most this many starts over within `RESTART_WINDOW`; one more fails the run.
const RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(300);
/// The wait before the first start over, doubled for each within the window.
#[cfg(not(test))]
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
#[cfg(test)]
const FIRST_BACKOFF: Duration = Duration::from_millis(1);

/// Run the stage with `run` until it ends well, fails in set-up the first
/// time (a bad setting, a service down at start: the caller's error), fails
/// as `may_start_over` says it must not go on from, or more often than
/// `RESTARTS` in `RESTART_WINDOW`, or a signal came. Bounded runs (`follow`
/// false) run once. `run` gives `Err` when it failed before consuming, else
/// its totals and how it ended; the totals of every run are summed, with the
/// number of starts over.
pub async fn follow_through(
    follow: bool,
    may_start_over: impl Fn(&anyhow::Error) -> bool,
    mut run: impl AsyncFnMut() -> Result<(Totals, Result<()>)>,
) -> Result<(Totals, Result<()>)> {
    let start = Instant::now();
    let shutdown = crate::shutdown::listen();
    let mut all: Option<Totals> = None;
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        let failure = match run().await {
            Ok((totals, result)) => {
                let failed = result.err();
                match &mut all {
                    Some(all) => all.absorb(totals),
                    None => all = Some(totals),
                }
                match failed {
                    None => break,
                    Some(e) => e,
                }
            }
            Err(e) if all.is_none() => return Err(e),
            Err(e) => e,
        };
        let totals = all.as_mut().expect("a run before");
        while recent.front().is_some_and(|t| t.elapsed() > RESTART_WINDOW) {
            recent.pop_front();
        }
        if !follow || *shutdown.borrow() || recent.len() >= RESTARTS || !may_start_over(&failure) {
            return Ok((finish(all, start), Err(failure)));
        }
        let backoff = FIRST_BACKOFF * 2u32.pow(recent.len() as u32);
        recent.push_back(Instant::now());
        totals.restarts += 1;
        tracing::warn!(
            restart = totals.restarts,
            backoff_s = backoff.as_secs(),
            "{failure:#}: starting over from the last commit"
        );
        // A signal while waiting: the run ends with the failure it was waiting to start over from.
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|&s| s) => return Ok((finish(all, start), Err(failure))),
        }
    }
    Ok((finish(all, start), Ok(())))
}

/// The summed totals, timed over the whole run.
fn finish(all: Option<Totals>, start: Instant) -> Totals {
    let mut totals = all.unwrap_or_default();
    totals.timed(start);
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(received: u64, result: Result<()>) -> Result<(Totals, Result<()>)> {
        Ok((Totals { received, settled_in: received, ..Default::default() }, result))
    }

    #[tokio::test]
    async fn a_follow_run_that_fails_starts_over_and_sums_its_runs() {
        let mut runs = 0;
        let (totals, result) = follow_through(
            true,
            |_| true,
            async || {
                runs += 1;
                match runs {
                    1 => ran(10, Err(anyhow::anyhow!("fenced"))),
                    2 => Err(anyhow::anyhow!("Kafka still away")),
                    _ => ran(5, Ok(())),
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(runs, 3);
        assert!(result.is_ok());
        assert_eq!((totals.received, totals.restarts), (15, 2));
    }

    /// `follow_through` over runs that each take a record and fail with `why`:
    /// how many ran, and what it gave.
    async fn failing(follow: bool, may: impl Fn(&anyhow::Error) -> bool, why: &str) -> (usize, Totals, Result<()>) {
        let mut runs = 0;
        let (totals, result) = follow_through(follow, may, async || {
            runs += 1;
            ran(1, Err(anyhow::anyhow!(why.to_owned())))
        })
        .await
        .unwrap();
        (runs, totals, result)
    }

    #[tokio::test]
    async fn a_bounded_run_or_a_first_set_up_failure_is_not_retried() {
        let (runs, totals, result) = failing(false, |_| true, "fenced").await;
        assert_eq!((runs, totals.received, totals.restarts), (1, 1, 0));
        assert!(result.is_err());
        let set_up = follow_through(true, |_| true, async || Err(anyhow::anyhow!("no such topic"))).await;
        assert!(set_up.is_err());
    }

    #[tokio::test]
    async fn a_failure_it_must_not_go_on_from_ends_the_run() {
        let (runs, _, result) = failing(true, |e| !format!("{e}").contains("twin"), "fenced by a twin").await;
        assert_eq!(runs, 1);
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn too_many_failures_in_the_window_fail_the_run() {
        let (runs, totals, result) = failing(true, |_| true, "fenced again").await;
        assert_eq!(runs, RESTARTS + 1);
        assert_eq!(totals.restarts, RESTARTS as u64);
        assert!(format!("{:#}", result.unwrap_err()).contains("fenced again"));
    }
}
