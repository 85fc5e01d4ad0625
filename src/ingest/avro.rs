//! `--format avro`: the users as Avro of schemas/users_raw.avsc, registered
//! at start. A user the raw schema cannot hold (no valid `login.uuid`, a
//! field of the wrong type) is sent as the JSON it came as: the transform
//! reads either and sends it to the DLQ with the reason, so nothing is lost.

use std::borrow::Cow;

use anyhow::{Context, Result};

use crate::avro::{USERS_RAW, Writer, register_for};
use crate::raw::decode::RawDecoder;
use crate::registry::{Registry, RegistryOpts};

pub struct AvroUsers {
    decoder: RawDecoder,
    writer: Writer,
    pub schema_id: u32,
}

impl AvroUsers {
    /// Register the raw users' schema for `topic` and prepare the writer.
    pub async fn new(registry: &RegistryOpts, topic: &str) -> Result<Self> {
        let registry = Registry::new(registry)?;
        let schema_id = register_for(registry.as_ref(), "--format avro", topic, USERS_RAW).await?;
        let decoder = RawDecoder::default();
        let writer = Writer::new(&decoder.schema(), USERS_RAW, schema_id)?;
        Ok(Self { decoder, writer, schema_id })
    }

    /// Each of `users` as Avro, or as it came when the schema cannot hold it.
    pub fn encode<'a>(&mut self, users: &[&'a [u8]]) -> Result<Vec<Cow<'a, [u8]>>> {
        let payloads: Vec<Option<&[u8]>> = users.iter().map(|u| Some(*u)).collect();
        let decoded = self.decoder.decode(&payloads).context("reading users for Avro")?;
        let rows = self.writer.encode(&decoded.batch)?;
        let mut out: Vec<Cow<'a, [u8]>> = users.iter().map(|u| Cow::Borrowed(*u)).collect();
        for (row, input) in rows.iter().zip(&decoded.rows) {
            out[*input] = Cow::Owned(row.to_vec());
        }
        for (input, why) in &decoded.rejected {
            tracing::debug!(input, why, "a user the raw schema cannot hold goes on as JSON");
        }
        Ok(out)
    }
}
