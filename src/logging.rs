//! tracing to stderr, as text or JSON; the level comes from RTDS_LOG (default info).

use tracing_subscriber::EnvFilter;

/// The format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RTDS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn,rdkafka=warn,scylla=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn,delta_kernel=warn,deltalake_core=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
