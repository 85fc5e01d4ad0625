//! Arrow batches to Avro records framed with their schema's id: arrow-avro's
//! row encoder, one payload a row.

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::{EncodedRows, Encoder, WriterBuilder};

/// Writes batches of one Arrow schema as records of one registered Avro schema.
pub struct Writer {
    encoder: Encoder,
    arrow: SchemaRef,
}

impl Writer {
    /// A writer of batches shaped `arrow` as the Avro schema `avsc`, which the
    /// registry holds as `id` (each record starts with its Confluent header).
    pub fn new(arrow: &Schema, avsc: &str, id: u32) -> Result<Self> {
        let mut metadata = arrow.metadata().clone();
        metadata.insert(SCHEMA_METADATA_KEY.to_owned(), avsc.to_owned());
        let schema = Schema::new_with_metadata(arrow.fields().clone(), metadata);
        let encoder = WriterBuilder::new(schema)
            .with_fingerprint_strategy(FingerprintStrategy::Id(id))
            .build_encoder::<AvroSoeFormat>()
            .with_context(|| format!("preparing the Avro writer of schema id {id}"))?;
        Ok(Self { encoder, arrow: Arc::new(arrow.clone()) })
    }

    /// The Arrow schema of the batches it writes.
    pub fn schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Each row of `batch` as one framed record.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<EncodedRows> {
        self.encoder.encode(batch).context("encoding a batch as Avro")?;
        Ok(self.encoder.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::wire;

    #[test]
    fn raw_users_are_framed_avro_that_reads_back_as_the_same_rows() {
        let users: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let mut buf = Vec::new();
                crate::generate::Generator::new(5).write_record(i, &mut buf);
                buf
            })
            .collect();
        let payloads: Vec<Option<&[u8]>> = users.iter().map(|u| Some(u.as_slice())).collect();
        let decoded = crate::raw::decode::RawDecoder::default().decode(&payloads).unwrap();
        let mut writer = Writer::new(&decoded.batch.schema(), super::super::USERS_RAW, 7).unwrap();
        let rows = writer.encode(&decoded.batch).unwrap();
        assert_eq!(rows.len(), 3);

        use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store.set(Fingerprint::Id(7), AvroSchema::new(super::super::USERS_RAW.to_owned())).unwrap();
        let mut reader =
            arrow_avro::reader::ReaderBuilder::new().with_writer_schema_store(store).build_decoder().unwrap();
        for row in rows.iter() {
            assert_eq!(wire::split(&row).map(|(id, _)| id), Some(7), "framed with the schema's id");
            assert_eq!(reader.decode(&row).unwrap(), row.len());
        }
        let back = reader.flush().unwrap().unwrap();
        assert_eq!(back.num_rows(), 3);
        // As JSON (the Avro side names its records in field metadata, JSON shows values only).
        let json = |batch: &RecordBatch| {
            let mut w = arrow_json::ArrayWriter::new(Vec::new());
            w.write(batch).unwrap();
            w.finish().unwrap();
            String::from_utf8(w.into_inner()).unwrap()
        };
        let (original, read_back) = (json(&decoded.batch), json(&back));
        assert!(original.contains("login"), "{original}");
        assert_eq!(original, read_back);
    }
}
