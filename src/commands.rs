//! What each subcommand does: serve, migrate, healthcheck, print the
//! effective settings, print shell completions, print a user token.
//! Output meant for scripts (a token, a config, a completion script) goes to
//! standard output; everything else is logged.

use crate::auth::TokenKeys;
use crate::config::{Cli, Command, Settings};
use crate::db;
use crate::startup::{load_secrets, Application, Schema};
use clap::CommandFactory;
use std::io::Write;
use std::time::Duration;

/// How long `herald healthcheck` waits for `/readyz`.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `command`; an error is what to log before exiting 1.
pub fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve { no_migrate } => serve(settings, no_migrate),
        Command::Migrate => migrate(&settings),
        Command::Healthcheck { url } => {
            healthcheck(&url.unwrap_or_else(|| format!("{}/readyz", settings.local_url(None))))
        }
        Command::Config => print(&effective_toml(&settings)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut script);
            print(&String::from_utf8_lossy(&script))
        }
        Command::Token {
            user_id,
            groups,
            ttl,
        } => print_token(&settings, &user_id, &groups, ttl),
    }
}

/// Writes a command's output; a closed pipe (`herald config | head`) is
/// an error like any other, not a panic as with `print!`.
fn print(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

fn serve(settings: Settings, no_migrate: bool) -> Result<(), String> {
    let schema = if no_migrate {
        Schema::AsIs
    } else {
        Schema::Migrate
    };
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build_with(settings.clone(), schema)
            .await
            .map_err(|e| e.to_string())?;
        let base = settings.local_url(Some(app.port()));
        tracing::info!(address = %base, database = %db::redacted(&settings.database_url), "herald is listening");
        if let Some(token) = &app.generated_admin_token {
            tracing::info!("generated the admin token; printed once on standard output, not logged");
            print_admin_token(token, &base)?;
        }
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

/// The one time a generated admin token is shown: printed, not logged,
/// because log events may be shipped to places that must not hold it.
fn print_admin_token(token: &str, base: &str) -> Result<(), String> {
    print(&format!(
        "herald generated the admin token (shown only this once; it is stored in the database):\n    {token}\nadmin console: {base}/admin.html\n"
    ))
}

fn migrate(settings: &Settings) -> Result<(), String> {
    db::connect(&settings.database_url, 1, settings.db_busy_timeout_ms)
        .map_err(|e| e.to_string())?;
    tracing::info!(database = %db::redacted(&settings.database_url), "database schema is up to date");
    Ok(())
}

/// 0 when `url` answers 200 within the timeout; the reason otherwise.
fn healthcheck(url: &str) -> Result<(), String> {
    let url = url.to_string();
    actix_web::rt::System::new().block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(HEALTHCHECK_TIMEOUT)
            .build()
            .map_err(|e| format!("{url}: {e}"))?;
        let status = actix_web::rt::time::timeout(HEALTHCHECK_TIMEOUT, client.get(&url).send())
            .await
            .map_err(|_| format!("{url}: no answer within {HEALTHCHECK_TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?
            .status();
        if status == reqwest::StatusCode::OK {
            tracing::info!(%url, "ready");
            Ok(())
        } else {
            Err(format!("{url}: not ready ({status})"))
        }
    })
}

/// The settings in force as TOML, for `herald config`: secrets replaced
/// by `***` (and the password in the database URL), so the output can be
/// pasted into a ticket.
pub fn effective_toml(settings: &Settings) -> String {
    const HIDDEN: &str = "***";
    let mut shown = settings.clone();
    shown.database_url = db::redacted(&settings.database_url);
    shown.webhook_urls = settings
        .webhook_urls
        .iter()
        .map(|u| db::redacted(u))
        .collect();
    if shown.webhook_secret.is_some() {
        shown.webhook_secret = Some(HIDDEN.to_string());
    }
    let mut notes = String::new();
    for (name, secret) in [
        ("jwt_secret", &mut shown.jwt_secret),
        ("admin_token", &mut shown.admin_token),
    ] {
        match secret {
            Some(value) => *value = HIDDEN.to_string(),
            None => notes.push_str(&format!(
                "# {name}: not set; generated once and kept in the database\n"
            )),
        }
    }
    let body = toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot show settings: {e}\n"));
    format!("{body}{notes}")
}

fn print_token(
    settings: &Settings,
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
    print(&format!("{token}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_settings_hide_secrets_and_passwords() {
        let mut s = Settings::defaults();
        s.database_url = "postgres://herald:s3cret@db/herald".into();
        s.jwt_secret = Some("jwt-secret-0123456789".into());
        s.admin_token = None;
        s.webhook_urls = vec!["https://hooks:pw-in-url@h.example/in".into()];
        s.webhook_secret = Some("whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=".into());
        let shown = effective_toml(&s);
        assert!(!shown.contains("Y2hhbmdl"), "{shown}");
        assert!(!shown.contains("pw-in-url"), "{shown}");
        assert!(shown.contains("webhook_secret = \"***\""), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("jwt-secret-0123456789"), "{shown}");
        assert!(shown.contains("database_url = \"postgres://herald:***@db/herald\""));
        assert!(shown.contains("jwt_secret = \"***\""));
        assert!(shown.contains("# admin_token: not set"));
        let table: toml::Table = shown.parse().expect("valid TOML");
        assert_eq!(table["bind"].as_str(), Some("127.0.0.1:8080"));
    }
}
