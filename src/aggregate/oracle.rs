//! The windows a run should have emitted, as one batch `GROUP BY` over the
//! records it read: every record in each of its windows that the run had to
//! emit (ending after `after`, where the windows stood at its start, and by
//! `until`, where they stood at its end) but those its dead letter says it
//! was late for. What `rtds reconcile` compares an aggregate run's output with.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::Plan;
use crate::kafka::Batch;
use crate::registry::Registry;

pub struct Oracle {
    plan: Plan,
    after: Option<i64>,
    until: Option<i64>,
    /// Records counted in at least one window.
    pub counted: u64,
    /// Records that cannot be counted (not raw users, no event time) and are not in the DLQ.
    pub undead: u64,
}

impl Oracle {
    pub async fn new(
        sql: &str,
        event_time: Option<&str>,
        registry: Option<Registry>,
        after: Option<i64>,
        until: Option<i64>,
    ) -> Result<Self> {
        Ok(Self { plan: Plan::new(sql, event_time, registry).await?, after, until, counted: 0, undead: 0 })
    }

    /// Count `batch`'s records in their windows; `dead` gives the DLQ reason
    /// of a record the run dead-lettered (by partition and offset).
    pub async fn add(&mut self, batch: &Batch, dead: &HashMap<(i32, i64), String>) -> Result<()> {
        let Plan { windows, schema, aggregation, event_time, decoder, .. } = &mut self.plan;
        let decoded = decoder.decode(batch).await?;
        let (times, failed) = event_time.times(&decoded, batch).await?;
        let source = |i: usize| (batch.get(i).partition(), batch.get(i).offset());
        let rejected = decoded.rejected.iter().chain(&failed).map(|(i, _)| source(*i));
        self.undead += rejected.filter(|at| !dead.contains_key(at)).count() as u64;
        let (until, size) = (self.until, windows.size);
        let mut pairs = Vec::new();
        for (row, time) in times.iter().enumerate() {
            let Some(t) = *time else { continue };
            let late = dead.get(&source(decoded.rows[row])).and_then(|why| super::output::late_until(why));
            let after = self.after.max(late);
            let due = windows
                .starts(t)
                .filter(|s| after.is_none_or(|a| s + size > a) && until.is_none_or(|u| s + size <= u))
                .map(|s| (row as u32, s));
            let before = pairs.len();
            pairs.extend(due);
            self.counted += u64::from(pairs.len() > before);
        }
        aggregation.add(windows.rows(&decoded.batch, &pairs, schema)?).await
    }

    /// Every window's rows, as (key, JSON) the way the stage writes them, by key.
    pub async fn rows(mut self) -> Result<BTreeMap<String, String>> {
        let out = self.plan.aggregation.emit(None).await?;
        Ok(self.plan.keys.rows(&out)?.into_iter().collect())
    }
}
