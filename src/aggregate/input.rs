//! What an aggregate reads, as its SQL's FROM names it: raw users
//! (`users_raw`, the table the transform's SQL sees) or clean rows
//! (`users_created`, the transform's output, text columns as the file sinks
//! hold them); each record, JSON or Avro, decoded into a row of that table.

use std::ops::ControlFlow;

use anyhow::Result;
use arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{Statement, visit_relations};

use crate::avro::RowReader;
use crate::kafka::Batch;
use crate::raw::decode::{Decoded, RawDecoder, raw_schema};
use crate::raw::reader::RawReader;
use crate::registry::Registry;
use crate::transform::sql::INPUT_TABLE;

/// The table of clean rows.
pub const CLEAN_TABLE: &str = "users_created";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Raw,
    Clean,
}

impl Input {
    /// What `statement` reads: clean rows if it names their table, else raw users.
    pub fn of(statement: &Statement) -> Self {
        let clean = visit_relations(statement, |name| {
            if name.to_string().eq_ignore_ascii_case(CLEAN_TABLE) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if clean.is_break() { Input::Clean } else { Input::Raw }
    }

    pub fn table(self) -> &'static str {
        match self {
            Input::Raw => INPUT_TABLE,
            Input::Clean => CLEAN_TABLE,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Input::Raw => raw_schema(),
            Input::Clean => crate::sinks::files::text_schema(),
        }
    }
}

/// Records into rows of the input's table.
pub enum Decoder {
    /// Reading only the raw fields `reads` names.
    Raw(RawReader),
    Clean(RowReader),
}

impl Decoder {
    pub fn new(input: Input, reads: impl Fn(&str) -> bool, registry: Option<Registry>) -> Result<Self> {
        Ok(match input {
            Input::Raw => Decoder::Raw(RawReader::new(RawDecoder::reading(reads), registry)?),
            Input::Clean => Decoder::Clean(RowReader::new(registry)),
        })
    }

    pub async fn decode(&mut self, batch: &Batch) -> Result<Decoded> {
        match self {
            Decoder::Raw(reader) => {
                let payloads: Vec<Option<&[u8]>> = batch.iter().map(|r| r.payload()).collect();
                reader.decode(&payloads).await
            }
            Decoder::Clean(reader) => {
                let (mut rows, mut kept, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
                for (i, parsed) in reader.rows(batch).await?.into_iter().enumerate() {
                    match parsed {
                        Ok(row) => {
                            rows.push(row);
                            kept.push(i);
                        }
                        Err(why) => rejected.push((i, why)),
                    }
                }
                let refs: Vec<&crate::row::UserRow> = rows.iter().collect();
                let table = crate::sinks::files::rows_batch(&Input::Clean.schema(), &refs)?;
                let ids = rows.iter().map(|r| r.id().to_owned()).collect();
                Ok(Decoded { batch: table, rows: kept, ids, rejected })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    #[test]
    fn the_table_a_sql_reads_says_what_the_aggregate_decodes() {
        let of = |sql: &str| Input::of(&Parser::parse_sql(&GenericDialect {}, sql).unwrap()[0]);
        assert_eq!(of("SELECT count(*) FROM users_raw"), Input::Raw);
        assert_eq!(of("SELECT count(*) FROM USERS_CREATED"), Input::Clean);
        assert_eq!(of("SELECT n FROM (SELECT count(*) AS n FROM users_created) t"), Input::Clean);
    }
}
