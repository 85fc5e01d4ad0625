//! Clean rows as the load and the aggregate read them, JSON or Avro record by
//! record (the first byte tells). Rows in Avro (`rtds transform
//! --output-format avro`): the framed records of a batch read at once, each
//! with the registry's schema of its id, resolved to the row contract's
//! columns (a newer SQL's extra fields are skipped, a column a writer lacks
//! reads as null), into the rows the JSON path makes.

use std::collections::HashMap;

use anyhow::Result;
use arrow::array::{Array, StringArray};

use super::{Reader, contract_schema};
use crate::kafka::Batch;
use crate::registry::{Registry, wire};
use crate::row::{Stamps, UserRow, WIDTH};

pub struct RowReader {
    reader: Reader,
}

impl RowReader {
    pub fn new(registry: Option<Registry>) -> Self {
        let (schema, arrow) = contract_schema();
        Self { reader: Reader::new(registry, &schema, arrow) }
    }

    /// Each record's row, stamped with its ingest time, or why it has none.
    pub async fn rows(&mut self, batch: &Batch) -> Result<Vec<Result<UserRow, String>>> {
        let mut from_avro = self.read(batch).await?;
        let mut stamps = Stamps::default();
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                // A batch of JSON rows looks nothing up.
                let avro = if from_avro.is_empty() { None } else { from_avro.remove(&i) };
                let parsed = avro.unwrap_or_else(|| UserRow::parse(m.payload()));
                parsed.map(|r| r.stamped(m.ingested_at(), &mut stamps))
            })
            .collect())
    }

    /// The row, or why there is none, of each framed record of `batch`, by its
    /// index; JSON records are not in it.
    async fn read(&mut self, batch: &Batch) -> Result<HashMap<usize, Result<UserRow, String>>> {
        let framed: Vec<(usize, &[u8])> = (0..batch.len())
            .filter_map(|i| batch.get(i).payload().filter(|p| wire::is_framed(p)).map(|p| (i, p)))
            .collect();
        let mut out = HashMap::with_capacity(framed.len());
        if framed.is_empty() {
            return Ok(out);
        }
        let read = self.reader.read(&framed).await?;
        let columns: Vec<&StringArray> =
            read.batch.columns().iter().filter_map(|c| c.as_any().downcast_ref::<StringArray>()).collect();
        anyhow::ensure!(columns.len() == WIDTH, "Avro rows read as {} text columns, not {WIDTH}", columns.len());
        for (n, input) in read.rows.iter().enumerate() {
            let values = std::array::from_fn(|c| columns[c].is_valid(n).then(|| columns[c].value(n)));
            out.insert(*input, UserRow::of(values));
        }
        out.extend(read.rejected.into_iter().map(|(i, why)| (i, Err(why))));
        Ok(out)
    }
}
