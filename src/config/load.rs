//! Layering the settings: clap reads flags, environment variables and
//! defaults; a TOML file named by `--config` / `HERALD_CONFIG` goes between
//! the defaults and the environment. figment merges the layers and names
//! the key and the file when the file is wrong; clap tells which values came
//! from the command line or the environment (`ArgMatches::value_source`),
//! and only those are laid over the file. There is one settings type and no
//! parser of our own: clap parses flags and variables, figment the file.

use super::{Cli, Command, Settings};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What to do and with which settings.
#[derive(Debug)]
pub struct Loaded {
    pub command: Command,
    pub settings: Settings,
    /// The config file the settings were read from, if any.
    pub file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A bad flag or variable, or `--help` / `--version` (clap prints those).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The command and settings from this process's arguments and environment.
pub fn load() -> Result<Loaded, LoadError> {
    load_from(std::env::args_os())
}

/// As `load`, from the given arguments (the first is the program name).
pub fn load_from<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let settings = match &cli.config {
        Some(path) => with_file(&matches, &cli.settings, path)?,
        None => cli.settings,
    };
    settings.validate().map_err(LoadError::Invalid)?;
    Ok(Loaded {
        command: cli.command.unwrap_or(Command::Serve { no_migrate: false }),
        settings,
        file: cli.config,
    })
}

/// The file's values over the defaults, then the flags' and variables'.
fn with_file(matches: &ArgMatches, parsed: &Settings, path: &Path) -> Result<Settings, LoadError> {
    // figment reads a missing file as an empty one; a named file must exist.
    std::fs::File::open(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file_error = |message: String| LoadError::File {
        path: path.to_path_buf(),
        message,
    };
    // `parsed` holds clap's defaults where nothing was given; the values that
    // were given are laid over the file again below.
    Figment::from(Serialized::defaults(parsed))
        .merge(Toml::file_exact(path))
        .merge(Serialized::defaults(
            explicit(matches, parsed).map_err(file_error)?,
        ))
        .extract::<Settings>()
        .map_err(|e| file_error(describe(e)))
}

/// The settings that came from the command line or the environment.
fn explicit(matches: &ArgMatches, parsed: &Settings) -> Result<Dict, String> {
    let mut values = Value::serialize(parsed)
        .map_err(|e| e.to_string())?
        .into_dict()
        .ok_or("settings are not a table")?;
    values.retain(|key, _| {
        matches!(
            source(matches, key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    });
    Ok(values)
}

/// Where an argument's value came from. Settings are global arguments, so
/// a value given after a subcommand (`herald migrate --database-url ...`)
/// is recorded in that subcommand's matches.
fn source(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    let here = matches
        .try_contains_id(id)
        .is_ok_and(|present| present)
        .then(|| matches.value_source(id))
        .flatten();
    let below = matches.subcommand().and_then(|(_, sub)| source(sub, id));
    match (here, below) {
        (Some(ValueSource::CommandLine), _) | (_, Some(ValueSource::CommandLine)) => {
            Some(ValueSource::CommandLine)
        }
        (Some(ValueSource::EnvVariable), _) | (_, Some(ValueSource::EnvVariable)) => {
            Some(ValueSource::EnvVariable)
        }
        (here, below) => here.or(below),
    }
}

/// Each problem naming its key (`` `heartbeat_interval`: invalid type:
/// found string "x", expected u64 ``, ``unknown key `bnd` ``).
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| match &e.kind {
            figment::error::Kind::UnknownField(key, known) => {
                format!("unknown key `{key}` (the keys are {})", known.join(", "))
            }
            kind => match e.path.join(".") {
                key if key.is_empty() => kind.to_string(),
                key => format!("`{key}`: {kind}"),
            },
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `trusted_proxies` in a file: the same entries the flag takes (a CIDR
/// block or a bare address).
pub(super) fn trusted_proxies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|entry| crate::proxy::parse_trusted(entry).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(toml: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(toml.as_bytes()).expect("write");
        f
    }

    fn load_with(file: &tempfile::NamedTempFile, args: &[&str]) -> Result<Loaded, LoadError> {
        let path = file.path().to_str().expect("utf-8 path");
        load_from(["herald", "--config", path].iter().chain(args))
    }

    #[test]
    fn the_file_beats_defaults_and_flags_beat_the_file() {
        let f = file(
            "bind = \"0.0.0.0:9000\"\nheartbeat_interval = 30\n\
             allowed_origins = [\"https://app.example\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        );
        let loaded = load_with(&f, &["--heartbeat-interval", "40"]).expect("loads");
        let s = &loaded.settings;
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert_eq!(s.heartbeat_interval, 40);
        assert_eq!(s.allowed_origins, ["https://app.example"]);
        let nets: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
        assert_eq!(
            s.heartbeat_timeout, 60,
            "a key the file leaves out keeps its default"
        );
        assert_eq!(loaded.file.as_deref(), Some(f.path()));
    }

    #[test]
    fn a_flag_after_the_subcommand_beats_the_file_too() {
        let f = file("database_url = \"sqlite://from-file.db\"\n");
        let loaded =
            load_with(&f, &["migrate", "--database-url", "sqlite://flag.db"]).expect("loads");
        assert_eq!(loaded.settings.database_url, "sqlite://flag.db");
        assert!(matches!(loaded.command, Command::Migrate));
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_file() {
        let f = file("bind = \"127.0.0.1:1\"\nheartbeat_intervall = 30\n");
        let err = load_with(&f, &[]).expect_err("refused").to_string();
        assert!(err.contains("heartbeat_intervall"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_the_file() {
        let f = file("max_frame_bytes = \"big\"\n");
        let err = load_with(&f, &[]).expect_err("refused").to_string();
        assert!(err.contains("`max_frame_bytes`"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        let bad_proxy = file("trusted_proxies = [\"nonsense\"]\n");
        let err = load_with(&bad_proxy, &[]).expect_err("refused").to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("nonsense"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load_from(["herald", "--config", "/nonexistent/herald.toml"])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("/nonexistent/herald.toml"), "{err}");
    }

    #[test]
    fn settings_from_a_file_are_validated() {
        let f = file("heartbeat_min = 50\nheartbeat_max = 10\n");
        assert!(matches!(load_with(&f, &[]), Err(LoadError::Invalid(_))));
    }

    #[test]
    fn no_subcommand_means_serve() {
        let loaded = load_from(["herald"]).expect("loads");
        assert!(matches!(
            loaded.command,
            Command::Serve { no_migrate: false }
        ));
    }

    /// `deploy/herald.toml.example` lists every key with its default (the
    /// secrets with a placeholder), commented out: uncommented, herald must
    /// read it and get its defaults, so the example cannot drift.
    #[test]
    fn the_example_config_file_names_every_key_with_its_default() {
        let example = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/herald.toml.example"
        ));
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let f = file(&uncommented);
        let loaded = load_with(&f, &[]).expect("the example loads");
        let mut got = Value::serialize(&loaded.settings)
            .expect("serialize")
            .into_dict()
            .expect("table");
        let mut defaults = Value::serialize(Settings::defaults())
            .expect("serialize")
            .into_dict()
            .expect("table");
        // Settings that are unset by default show an example value instead.
        const EXAMPLES: [&str; 7] = [
            "jwt_secret",
            "webhook_secret",
            "admin_token",
            "jwt_public_key",
            "jwks_url",
            "jwt_issuer",
            "jwt_audience",
        ];
        for key in EXAMPLES {
            assert!(got.remove(key).is_some(), "the example shows `{key}`");
            defaults.remove(key);
        }
        assert_eq!(got, defaults);
        let keys: std::collections::BTreeSet<&str> = uncommented
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .collect();
        let mut fields: std::collections::BTreeSet<&str> =
            defaults.keys().map(String::as_str).collect();
        fields.extend(EXAMPLES);
        assert_eq!(keys, fields, "the example's keys are the settings");
    }
}
