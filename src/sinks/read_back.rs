//! What `rtds reconcile` reads back from a store: which of a run's ids it
//! holds, as which version.

use std::collections::HashMap;

use crate::error::usage;

/// The ids a store holds of those asked for, each with the ingest stamp of
/// its version (milliseconds; `None` when it has none).
pub type Present = HashMap<uuid::Uuid, Option<i64>>;

/// What a store holds of the ids asked for: per id (in its canonical text
/// form, `row::canonical`), the ingest stamps of the versions held (files may
/// hold several); and, for a store that can hold an id more than once (files),
/// how many ids it holds more than once.
#[derive(Debug, Default)]
pub struct Held {
    pub versions: HashMap<String, Vec<Option<i64>>>,
    pub duplicated: Option<u64>,
    /// The store promises each id once (it appends, but never a batch twice):
    /// an id of the run held twice fails the check.
    pub once: bool,
}

impl Held {
    /// A store that upserts by id: one version an id.
    pub fn upserted(present: Present) -> Self {
        let versions = present.into_iter().map(|(id, at)| (id.to_string(), vec![at])).collect();
        Held { versions, duplicated: None, once: true }
    }

    /// A store that appends: every version of every id it holds.
    pub fn appended(ids: impl IntoIterator<Item = (String, Option<i64>)>) -> Self {
        let mut versions: HashMap<String, Vec<Option<i64>>> = HashMap::new();
        for (id, at) in ids {
            versions.entry(crate::row::canonical(id)).or_default().push(at);
        }
        let duplicated = Some(versions.values().filter(|v| v.len() > 1).count() as u64);
        Held { versions, duplicated, once: false }
    }

    /// A store that appends and never writes a batch twice (Delta): every
    /// version of every id it holds, and an id held twice is a failure.
    pub fn appended_once(ids: impl IntoIterator<Item = (String, Option<i64>)>) -> Self {
        Held { once: true, ..Held::appended(ids) }
    }
}

/// The ids of `ids` that are UUIDs (a store keyed by uuid holds no other).
pub fn uuids(ids: &[String]) -> Vec<uuid::Uuid> {
    ids.iter().filter_map(|id| uuid::Uuid::try_parse(id).ok()).collect()
}

/// A summary's `a.b` store, both validated identifiers (the summary is input,
/// never trusted in a statement).
pub fn qualified(store: &str) -> anyhow::Result<&str> {
    let parts: Vec<&str> = store.split('.').collect();
    match parts[..] {
        [a, b] if crate::validate::parse_identifier(a).is_ok() && crate::validate::parse_identifier(b).is_ok() => {
            Ok(store)
        }
        _ => usage(format!("invalid store {store:?} in a load summary: expected keyspace.table or schema.table")),
    }
}
