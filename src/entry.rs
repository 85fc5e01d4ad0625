//! The command line's entry point. `main.rs` only calls `main` here, so the
//! optimized build compiles the pipeline's async state machine once, in the
//! library, not again in the binary (bench/README.md, the build's time).

use std::process::ExitCode;

use clap::FromArgMatches;
use clap::parser::ValueSource;

use crate::cli::{Cli, Command, GlobalOpts};
use crate::{error, logging, validate};

/// Run the subcommand the user chose, each with the settings it takes.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let GlobalOpts { kafka, registry, metrics_addr, .. } = &cli.global;
    match &cli.command {
        Command::Ingest(args) => crate::ingest::run(kafka, registry, *metrics_addr, args).await,
        Command::Transform(args) => crate::transform::run(kafka, registry, *metrics_addr, args).await,
        Command::Aggregate(args) => crate::aggregate::run(kafka, registry, *metrics_addr, args).await,
        Command::Load(args) => crate::load::run(kafka, registry, *metrics_addr, args).await,
        Command::Check(args) => crate::check::run(kafka, registry, args).await,
        Command::Reconcile(args) => crate::reconcile::run(kafka, registry, args).await,
        Command::Query(args) => crate::query::run(args).await,
        Command::Maintain(args) => crate::maintain::run(args).await,
        Command::Offsets(args) => crate::offsets::run(kafka, args).await,
        Command::Replay(args) => crate::replay::run(kafka, args).await,
    }
}

/// Parse the command line, run the subcommand, print the error if any: the
/// process's exit code.
pub fn main() -> ExitCode {
    forget_empty_settings();
    let parsed = crate::cli::command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage_error(e),
    };
    logging::init(cli.global.log_format);
    if let Err(msg) = refuse_secrets_in_argv(&cli, &matches) {
        eprintln!("error: {msg}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Every client is closed by now: the summary is the last line of output.
    drop(runtime);
    crate::summary::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole context chain, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::from(error::exit_code(&e))
        }
    }
}

/// An `RTDS_*` variable set to the empty string counts as unset: a compose
/// file's `${VAR:-}` or a scheduler's empty field sets one, and its user means
/// "none" (else `RTDS_KAFKA_OPTIONS=` was refused as an invalid setting, and
/// `RTDS_METRICS_ADDR=` as an invalid address).
fn forget_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| v.is_empty() && k.to_str().is_some_and(|k| k.starts_with("RTDS_")))
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        // SAFETY: called first thing in `main`, before the runtime, logging or
        // any client starts a thread: nothing reads the environment meanwhile.
        unsafe { std::env::remove_var(k) };
    }
}

/// `--help` and `--version` print as clap does; a usage error becomes one line
/// on stderr and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let line = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    eprintln!("error: {line} (see rtds --help)");
    ExitCode::from(2)
}

/// Secrets must not appear in `ps` output: a secret Kafka setting given with
/// `--kafka-option` (rather than RTDS_KAFKA_OPTIONS or --kafka-config) is refused.
fn refuse_secrets_in_argv(cli: &Cli, matches: &clap::ArgMatches) -> Result<(), String> {
    if matches.value_source("kafka_options") != Some(ValueSource::CommandLine) {
        return Ok(());
    }
    match cli.global.kafka.kafka_options.iter().find(|(k, _)| validate::is_secret_key(k)) {
        Some((k, _)) => Err(format!(
            "--kafka-option {k}=… would show a secret in the process list: set it in RTDS_KAFKA_OPTIONS or the file of --kafka-config"
        )),
        None => Ok(()),
    }
}
