//! The options of `rtds transform`.

use std::path::PathBuf;

use clap::Args;

use crate::avro::Format;
use crate::kafka::TopicOpts;
use crate::stage::{ConsumeOpts, ExactlyOnceOpts};
use crate::validate;

#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    /// Topic of raw users.
    #[arg(long, env = "RTDS_INPUT_TOPIC", default_value = "users_raw", value_parser = validate::parse_topic)]
    pub input_topic: String,
    /// Topic of clean rows.
    #[arg(long, env = "RTDS_OUTPUT_TOPIC", default_value = "users_created", value_parser = validate::parse_topic)]
    pub output_topic: String,
    /// SQL file replacing the built-in transform (input table: users_raw).
    #[arg(long, env = "RTDS_SQL")]
    pub sql: Option<PathBuf>,
    #[command(flatten)]
    pub transactions: ExactlyOnceOpts,
    /// How clean rows are written: JSON, or Avro of a schema derived from the SQL's output,
    /// registered at start as subject <output topic>-value (BACKWARD). Raw users are read in
    /// either format, record by record.
    #[arg(long, env = "RTDS_OUTPUT_FORMAT", value_enum, default_value_t = Format::Json)]
    pub output_format: Format,
    #[command(flatten)]
    pub consume: ConsumeOpts,
    #[command(flatten)]
    pub topics: TopicOpts,
}
