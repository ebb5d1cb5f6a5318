//! The `herald` binary: parse settings, start logging, serve (or print a token).

use clap::Parser;
use herald::config::{Cli, Command};
use herald::startup::{load_secrets, Application};
use herald::{auth::TokenKeys, db};
use std::process::ExitCode;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Some(Command::Token {
            user_id,
            groups,
            ttl,
        }) => print_token(&cli.settings, &user_id, &groups, ttl),
        None | Some(Command::Serve) => serve(cli.settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: herald::config::Settings) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings.clone())
            .await
            .map_err(|e| e.to_string())?;
        let base = format!("http://{}", display_addr(&settings.bind, app.port()));
        tracing::info!(address = %base, database = %db::redacted(&settings.database_url), "herald is listening");
        if let Some(token) = &app.generated_admin_token {
            tracing::info!("generated the admin token; printed once on standard output, not logged");
            print_admin_token(token, &base);
        }
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

/// The one time a generated admin token is shown: printed, not logged,
/// because log events may be shipped to places that must not hold it.
fn print_admin_token(token: &str, base: &str) {
    println!(
        "herald generated the admin token (shown only this once; it is stored in the database):"
    );
    println!("    {token}");
    println!("admin console: {base}/admin.html");
}

fn display_addr(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = if host == "0.0.0.0" || host.is_empty() {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}")
}

fn print_token(
    settings: &herald::config::Settings,
    user_id: &str,
    groups: &[String],
    ttl: u64,
) -> Result<(), String> {
    let pool = db::connect(&settings.database_url, 1, settings.db_busy_timeout_ms)
        .map_err(|e| e.to_string())?;
    let secrets = load_secrets(&pool, settings).map_err(|e| e.to_string())?;
    let (token, _) = TokenKeys::new(&secrets.jwt_secret)
        .mint(user_id, groups, ttl)
        .map_err(|e| e.to_string())?;
    // The token is this command's output, for scripts: stdout, not the log.
    println!("{token}");
    Ok(())
}
