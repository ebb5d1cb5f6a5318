//! Operating herald (issue 15): the config file and its precedence, the
//! subcommands (`config`, `migrate`, `serve --no-migrate`, `healthcheck`,
//! `completions`), JSON logs and request ids, compression, and the HTTP
//! metrics. The command-line tests run the real binary.

mod cli;
mod http;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `herald args...` to completion with `env` set, from `dir`.
pub fn herald(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.current_dir(dir).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run herald")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
