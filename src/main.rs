//! The `herald` binary: load settings, start logging, run the subcommand.

use herald::config::{self, LoadError, LogFormat};
use std::process::ExitCode;

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        // One object per line; the request span's fields (its request id)
        // go on every line logged inside it.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let loaded = match config::load() {
        Ok(loaded) => loaded,
        // `--help`, `--version` and bad flags, as clap prints them.
        Err(LoadError::Cli(e)) => e.exit(),
        // Logging is not set up yet (the file may choose its format): this
        // start-up error goes to stderr the way clap's own errors do.
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(loaded.settings.log_format);
    if let Some(file) = &loaded.file {
        tracing::debug!(file = %file.display(), "settings read from the config file");
    }
    match herald::commands::run(loaded.command, loaded.settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
