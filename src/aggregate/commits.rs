//! What an aggregate may commit, with no state store of its own: offsets up
//! to the oldest record still counted in an open window (a restart reads the
//! rest again and rebuilds those windows), and, as the commit's metadata,
//! where its emitted windows stood, so that the restart does not count the
//! records it reads again into windows already emitted.

use std::collections::{BTreeMap, HashMap};

/// Per open window (by start), per partition, the offset of its oldest record.
#[derive(Debug, Default)]
pub struct Holds(BTreeMap<i64, HashMap<i32, i64>>);

impl Holds {
    pub fn add(&mut self, start: i64, partition: i32, offset: i64) {
        let oldest = self.0.entry(start).or_default().entry(partition).or_insert(offset);
        *oldest = (*oldest).min(offset);
    }

    /// The windows of `size` ending at or before `until` (`None`: all) are out.
    pub fn release(&mut self, until: Option<i64>, size: i64) {
        match until {
            Some(u) => self.0.retain(|start, _| start + size > u),
            None => self.0.clear(),
        }
    }

    /// The end of the newest window held.
    pub fn last_end(&self, size: i64) -> Option<i64> {
        self.0.keys().next_back().map(|start| start + size)
    }

    /// The offset `partition` may be committed at, `next` being the one after the last read.
    pub fn commit_point(&self, partition: i32, next: i64) -> i64 {
        self.0.values().filter_map(|w| w.get(&partition)).copied().fold(next, i64::min)
    }
}

/// A partition's last commit, as its metadata said: every window ending by
/// `emitted` was out, and every record below `read` was decided (counted, or
/// dead-lettered) with its outputs acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub emitted: Option<i64>,
    pub read: i64,
}

const PREFIX: &str = "rtds-aggregate";

impl Restored {
    pub fn metadata(emitted: Option<i64>, read: i64) -> String {
        let emitted = emitted.map_or_else(|| "none".to_owned(), |e| e.to_string());
        format!("{PREFIX} emitted={emitted} read={read}")
    }

    pub fn parse(metadata: &str) -> Option<Self> {
        let mut fields = metadata.strip_prefix(PREFIX)?.split_whitespace();
        let emitted = match fields.next()?.strip_prefix("emitted=")? {
            "none" => None,
            e => Some(e.parse().ok()?),
        };
        let read = fields.next()?.strip_prefix("read=")?.parse().ok()?;
        Some(Self { emitted, read })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_commits_up_to_the_oldest_record_of_an_open_window() {
        let mut holds = Holds::default();
        holds.add(0, 1, 40);
        holds.add(60_000, 1, 35);
        holds.add(60_000, 2, 7);
        assert_eq!(holds.commit_point(1, 50), 35);
        assert_eq!(holds.commit_point(3, 50), 50, "a partition no open window holds commits what it read");
        holds.release(Some(60_000), 60_000);
        assert_eq!(holds.commit_point(1, 50), 35, "the window of 35 is still open");
        assert_eq!(holds.last_end(60_000), Some(120_000));
        holds.release(None, 60_000);
        assert_eq!(holds.commit_point(1, 50), 50);
    }

    #[test]
    fn the_metadata_says_where_the_windows_stood() {
        for r in [Restored { emitted: Some(-60_000), read: 12 }, Restored { emitted: None, read: 0 }] {
            assert_eq!(Restored::parse(&Restored::metadata(r.emitted, r.read)), Some(r));
        }
        assert_eq!(Restored::parse(""), None, "a group that never committed");
        assert_eq!(Restored::parse("something else"), None);
    }
}
