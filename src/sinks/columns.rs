//! The row contract as a table's columns: those a new table is created with,
//! and the check an existing table must pass.

use std::collections::HashMap;

use crate::row::{COLUMNS, Kind};

/// An existing table must have every column of the row contract (and `extra`),
/// each of the type `want` gives; `have` maps its column names to their types.
pub fn check_columns(
    table: &str,
    have: &HashMap<String, String>,
    want: impl Fn(Kind) -> &'static str,
    extra: &[(&str, &str)],
) -> anyhow::Result<()> {
    check_have(table, have, COLUMNS.iter().map(|c| (c.name, want(c.kind))).chain(extra.iter().copied()))
}

/// An existing table must have each of the `wanted` columns, of its type.
pub fn check_have<'a>(
    table: &str,
    have: &HashMap<String, String>,
    wanted: impl Iterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    for (c, want) in wanted {
        match have.get(c) {
            None => {
                anyhow::bail!(
                    "table {table} exists but has no column `{c}` ({want}); drop it or choose another --table"
                )
            }
            Some(t) if t != want => anyhow::bail!("column `{c}` of {table} is {t}, expected {want}"),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The column definitions of a new table: each column with its type, the id the primary key.
pub fn column_ddl(kind_type: impl Fn(Kind) -> &'static str) -> String {
    let defs: Vec<String> = COLUMNS
        .iter()
        .map(|c| match c.kind {
            Kind::Id => format!("{} {} PRIMARY KEY", c.name, kind_type(c.kind)),
            _ => format!("{} {}", c.name, kind_type(c.kind)),
        })
        .collect();
    defs.join(", ")
}
