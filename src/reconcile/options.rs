//! The options of `rtds reconcile`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::sinks::SinkOpts;
use crate::validate;

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The stages' JSON summary lines (or, in RTDS_SUMMARIES, one a line); none: read them from stdin.
    #[arg(env = "RTDS_SUMMARIES", value_delimiter = '\n')]
    pub summaries: Vec<String>,
    /// The first stage of the chain to prove: a summary of each stage from here to --to must be given.
    /// Anything but ingest checks the run as partial, and says so.
    #[arg(long, env = "RTDS_FROM", value_enum, default_value_t = ChainStage::Ingest)]
    pub from: ChainStage,
    /// The last stage of the chain to prove (what it produced is not checked as read).
    #[arg(long, env = "RTDS_TO", value_enum, default_value_t = ChainStage::Load)]
    pub to: ChainStage,
    /// Fail when more than this share of a stage's input went to the DLQ (e.g. 1%, 0.05; 0 forbids any).
    #[arg(long, env = "RTDS_MAX_DLQ_SHARE", default_value = "1%", value_parser = validate::parse_share_of_one)]
    pub max_dlq_share: f64,
    /// How long reading an offset range back from Kafka may stall before reconcile gives up.
    #[arg(long, env = "RTDS_READ_TIMEOUT", default_value = "60s", value_parser = validate::parse_duration)]
    pub read_timeout: Duration,
    /// Every sink's own options, to read the stores back (src/sinks/).
    #[command(flatten)]
    pub sinks: SinkOpts,
}

/// The stages of a run's chain, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainStage {
    Ingest,
    Transform,
    Load,
}

impl ChainStage {
    pub const ALL: [ChainStage; 3] = [ChainStage::Ingest, ChainStage::Transform, ChainStage::Load];

    /// As a summary's `stage` names it.
    pub fn name(self) -> &'static str {
        match self {
            ChainStage::Ingest => "ingest",
            ChainStage::Transform => "transform",
            ChainStage::Load => "load",
        }
    }
}
