//! The raw users' format, what ingest writes and transform reads: a strict
//! one-pass JSON reader and the decoder of raw records into Arrow against the
//! raw schema (`decode::raw_schema`; its Avro twin is schemas/users_raw.avsc).
//! The input's contract, as `row` is the output's.

pub mod decode;
pub mod json;
pub mod reader;
