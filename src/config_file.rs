//! `--config FILE` (or `WSBROKER_CONFIG`): settings from a TOML file, below the flags and the
//! environment, and `wsbroker config`, the effective settings with their sources.
//!
//! Owns: turning the file into command-line arguments, and printing what clap made of them. Must
//! not: give a setting a meaning or a default; [`Config`]'s flags do. Every key is a flag's long
//! name (`database-url`, or `database_url`), so the file, the flags and `--help` never disagree.

use std::ffi::OsString;
use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::config::Config;

/// The environment variable naming the file, when `--config` does not.
pub const CONFIG_ENV: &str = "WSBROKER_CONFIG";

/// The settings as clap parsed them, and which came from the file.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    matches: ArgMatches,
    from_file: Vec<String>,
}

/// Parses `args` (the program name first) with the file's settings under them: flags, then the
/// environment, then the file, then the defaults. `Err`: what to print (help and version too)
/// and whether it is an error.
pub fn load(args: Vec<OsString>) -> Result<Loaded, clap::Error> {
    let mut command = Config::command();
    let file = named_file(&args).or_else(|| std::env::var_os(CONFIG_ENV));
    let (args, from_file) = match file {
        Some(file) => with_file(args, &command, &file)
            .map_err(|why| command.error(clap::error::ErrorKind::InvalidValue, why))?,
        None => (args, Vec::new()),
    };
    let matches = command.try_get_matches_from_mut(args)?;
    let config = Config::from_arg_matches(&matches)?;
    Ok(Loaded { config, matches, from_file })
}

/// `--config X` or `--config=X` among the arguments.
fn named_file(args: &[OsString]) -> Option<OsString> {
    let mut args = args.iter().map(|arg| arg.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(|file| OsString::from(file.as_ref()));
        }
        if let Some(file) = arg.strip_prefix("--config=") {
            return Some(file.into());
        }
    }
    None
}

/// `args` with `--key=value` added for each setting of `file` that no flag and no environment
/// variable gives; and those keys.
fn with_file(
    mut args: Vec<OsString>,
    command: &clap::Command,
    file: &OsString,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let path = std::path::Path::new(file);
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the config file {}: {err}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|err| format!("{}: not TOML: {err}", path.display()))?;
    let given: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
    let mut from_file = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name.as_str()) && name != "config")
            .ok_or_else(|| {
                format!(
                    "{}: unknown key `{key}` (keys are the flags' names: wsbroker --help)",
                    path.display()
                )
            })?;
        let flag = format!("--{name}");
        let on_command_line =
            given.iter().any(|arg| *arg == flag || arg.starts_with(&format!("{flag}=")));
        let in_environment = arg.get_env().is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        match (value, takes_value) {
            (toml::Value::Boolean(true), false) => args.push(flag.into()),
            (toml::Value::Boolean(false), false) => {}
            (value, true) => args.push(format!("{flag}={}", plain(&key, value)?).into()),
            (_, false) => return Err(format!("`{key}` is a switch: true or false")),
        }
        from_file.push(name);
    }
    Ok((args, from_file))
}

/// A TOML value as the flag's text: strings as they are, lists joined with commas.
fn plain(key: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => {
            let items: Result<Vec<String>, String> =
                items.into_iter().map(|item| plain(key, item)).collect();
            Ok(items?.join(","))
        }
        _ => Err(format!("`{key}` takes a string, a number, a boolean or a list")),
    }
}

/// Settings whose values are secret, or hold one (a URL's password).
const SECRETS: [&str; 1] = ["jwt-secret"];

impl Loaded {
    /// The effective settings as TOML (usable as a config file), each with where it came from;
    /// secrets and URL passwords redacted.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let command = Config::command();
        for arg in command.get_arguments() {
            let Some(name) = arg.get_long().filter(|name| *name != "config") else { continue };
            let id = arg.get_id().as_str();
            let source = match self.matches.value_source(id) {
                Some(_) if self.from_file.iter().any(|key| key == name) => "file",
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            let raw: Vec<String> = self
                .matches
                .get_raw(id)
                .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let value = match (raw.as_slice(), arg.get_action().takes_values()) {
                ([], false) => self.matches.get_flag(id).to_string(),
                ([], true) => {
                    let _ = writeln!(out, "# {name} (unset)");
                    continue;
                }
                (values, _) => redacted(name, &values.join(",")),
            };
            let value = if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
                value
            } else {
                format!("{value:?}")
            };
            let _ = writeln!(out, "{name} = {value}  # {source}");
        }
        out
    }
}

fn redacted(name: &str, value: &str) -> String {
    if SECRETS.contains(&name) {
        return "<redacted>".into();
    }
    // scheme://user:password@host...: the password goes, as in the store's logs.
    crate::store::without_password(value)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("wsbroker").chain(list.iter().copied()).map(OsString::from).collect()
    }

    /// A config file of the test's own, removed when dropped.
    struct Written(std::path::PathBuf);

    impl Drop for Written {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(text: &str) -> (Written, OsString) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wsbroker-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let name = path.clone().into_os_string();
        (Written(path), name)
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let (_kept, name) = file("max-content = 100\nrate_limit = 3.5\nauth-enabled = true\nallowed-origins = [\"https://a\", \"https://b\"]\n");
        let mut given = args(&["--max-content", "200", "--config"]);
        given.push(name);
        let loaded = load(given).unwrap();
        assert_eq!(loaded.config.max_content, 200, "the flag");
        assert_eq!(loaded.config.rate_limit, 3.5, "the file");
        assert!(loaded.config.auth_enabled);
        assert_eq!(loaded.config.shutdown_timeout, Duration::from_secs(10), "the default");
        let described = loaded.describe();
        assert!(described.contains("max-content = 200  # flag"), "{described}");
        assert!(described.contains("rate-limit = \"3.5\"  # file"), "{described}");
        assert!(
            described.contains("allowed-origins = \"https://a,https://b\"  # file"),
            "{described}"
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let (_kept, name) = file("max-contnet = 100\n");
        let mut given = args(&["--config"]);
        given.push(name);
        let error = load(given).unwrap_err().to_string();
        assert!(error.contains("unknown key `max-contnet`"), "{error}");
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        assert_eq!(redacted("jwt-secret", "s3cret"), "<redacted>");
        assert_eq!(
            redacted("database-url", "postgres://chat:pw@db:5432/chat"),
            "postgres://chat:***@db:5432/chat"
        );
        assert_eq!(redacted("redis-url", "redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
