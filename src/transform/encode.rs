//! SQL output batches to one JSON object per row, keyed by its `id`.

use anyhow::{Context, Result};
use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow_json::writer::{LineDelimited, WriterBuilder};

/// One clean row: its key and its JSON.
pub struct Row {
    pub id: String,
    pub json: Vec<u8>,
}

/// Every row of `batches`, nulls written out explicitly so each row has every field.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let ids = batch.column_by_name("id").context("the SQL output has no `id` column")?;
        let ids = cast(ids, &DataType::Utf8).context("reading `id` as text")?;
        let ids = ids.as_any().downcast_ref::<StringArray>().context("reading `id` as text")?;
        let mut buf = Vec::with_capacity(batch.num_rows() * 512);
        let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut buf);
        writer.write(batch).context("encoding rows as JSON")?;
        writer.finish().context("encoding rows as JSON")?;
        drop(writer);
        // JSON text never holds a raw newline, so lines are rows.
        for (row, line) in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            if ids.is_null(row) {
                anyhow::bail!("the SQL produced a row with a null `id`; every row needs one (it is the row's key)");
            }
            out.push(Row { id: ids.value(row).to_owned(), json: line.to_vec() });
        }
    }
    Ok(out)
}
