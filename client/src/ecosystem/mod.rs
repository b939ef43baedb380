//! Ecosystem files: PM2's way of describing several apps in one file, read
//! by `pmd start|restart|reload|stop|delete FILE`.
//!
//! A FILE is an existing `.yaml`/`.yml`/`.json` file, or a `.js`/`.cjs`/
//! `.mjs` file whose name contains `.config.` or starts with `ecosystem`
//! (PM2's `ecosystem.config.js`), which `node` evaluates into JSON
//! ([`node`]). The file holds `apps:`, a list of apps with PM2's field
//! names ([`app`] has the list and the per-field checks).
//!
//! Loading is strict and all-or-nothing: an unknown field, a wrong type, a
//! bad value or a duplicate name fails the whole file with
//! `FILE:LINE:COL: app N (NAME): what is wrong`, and the caller sends
//! nothing. For a JS file the line and column are those of the JSON that
//! node printed, and the message says so.
//!
//! Talks to nothing but the file system and, for JS files, a `node` child.

mod app;
mod deps;
mod node;
#[cfg(test)]
mod proptests;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow};
use pmdaemon_proto::v1::AppSpec;

pub use app::AppDef;

use crate::UsageError;

/// How a file's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    /// JavaScript evaluated by node into JSON.
    JavaScript,
}

/// The format a path names by its file name, if it is an ecosystem file.
pub fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    let (_, ext) = name.rsplit_once('.')?;
    match ext.to_ascii_lowercase().as_str() {
        "yaml" | "yml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        "js" | "cjs" | "mjs" if name.contains(".config.") || name.starts_with("ecosystem") => {
            Some(Format::JavaScript)
        }
        _ => None,
    }
}

/// Whether a command-line target is an ecosystem file: an existing file
/// with one of the names [`format_of`] knows. Anything else is a script,
/// an app name, an id or `all`.
pub fn is_file_target(target: &str) -> bool {
    let path = Path::new(target);
    format_of(path).is_some() && path.is_file()
}

/// A loaded, checked ecosystem file.
#[derive(Debug, Clone)]
pub struct Ecosystem {
    /// The path as the user gave it, for messages.
    pub display: String,
    /// The file's directory, absolute: relative `script` and `cwd` paths of
    /// the file resolve against it (sent as `caller_cwd`).
    pub dir: String,
    pub apps: Vec<AppDef>,
    /// Things worth telling the user that are not errors (an ignored
    /// `deploy` section).
    pub notes: Vec<String>,
}

/// Reads and checks the ecosystem file at `path` (evaluating it with node
/// when it is JavaScript).
pub fn load(path: &str) -> anyhow::Result<Ecosystem> {
    let format =
        format_of(Path::new(path)).ok_or_else(|| anyhow!("{path} is not an ecosystem file"))?;
    let file = std::fs::canonicalize(path).with_context(|| format!("cannot open {path}"))?;
    let dir = file
        .parent()
        .and_then(Path::to_str)
        .with_context(|| format!("the directory of {} is not UTF-8", file.display()))?
        .to_string();
    let text = match format {
        Format::Yaml | Format::Json => {
            std::fs::read_to_string(&file).with_context(|| format!("cannot read {path}"))?
        }
        Format::JavaScript => node::evaluate(&file, path, node::find().as_deref())?,
    };
    let (apps, notes) = parse(path, format, &text)?;
    Ok(Ecosystem {
        display: path.to_string(),
        dir,
        apps,
        notes,
    })
}

/// Checks `text` (the file's, or node's JSON for a JS file). Errors name
/// `display`, the line and column, and the app.
///
/// `depends_on` is checked across the file once every app is read: each
/// dependency must be an app of the file, and there must be no cycle. Such
/// an error is raised at the offending `depends_on` entry by a second read
/// (see [`app::Ctx::fail_at`]), so it has a line and column too.
pub fn parse(
    display: &str,
    format: Format,
    text: &str,
) -> anyhow::Result<(Vec<AppDef>, Vec<String>)> {
    // A lenient first pass gives each app's name for messages about fields
    // that come before the `name` key (and reports syntax errors).
    let names = app_names(format, text)
        .map_err(|(at, message)| anyhow!(located(display, format, at, None, &[], &message)))?;
    let (apps, notes) = read(display, format, text, &names, None)?;
    let Err(fail_at) = deps::check(&apps) else {
        return Ok((apps, notes));
    };
    let (app, _, message) = fail_at.clone();
    match read(display, format, text, &names, Some(fail_at)) {
        Err(located_error) => Err(located_error),
        // Not expected: the second read raises it. Said without a place.
        Ok(_) => Err(anyhow!(located(
            display,
            format,
            None,
            Some(app),
            &names,
            &message
        ))),
    }
}

/// One strict read of the file; `fail_at` as [`app::Ctx::fail_at`].
fn read(
    display: &str,
    format: Format,
    text: &str,
    names: &[Option<String>],
    fail_at: Option<(usize, usize, String)>,
) -> anyhow::Result<(Vec<AppDef>, Vec<String>)> {
    let mut ctx = app::Ctx::default();
    ctx.fail_at = fail_at;
    let seed = app::FileSeed { ctx: &ctx };
    let result = match format {
        Format::Yaml => {
            use serde::de::DeserializeSeed;
            seed.deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| duplicate_key_at_its_line(text, yaml_error(&e)))
        }
        Format::Json | Format::JavaScript => {
            use serde::de::DeserializeSeed;
            let mut de = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut de)
                .and_then(|apps| de.end().map(|()| apps))
                .map_err(|e| json_error(&e))
        }
    };
    match result {
        Ok(apps) => Ok((apps, ctx.notes.take())),
        Err((at, message)) => Err(anyhow!(located(
            display,
            format,
            at,
            ctx.app.get(),
            names,
            &message
        ))),
    }
}

/// A line and column, 1-based.
type At = Option<(usize, usize)>;

fn yaml_error(e: &serde_yaml::Error) -> (At, String) {
    let at = e.location().map(|l| (l.line(), l.column()));
    (at, bare_message(&e.to_string(), at))
}

/// serde_yaml reports a duplicate key at the start of its mapping, before
/// the app is read: point at the second occurrence of the key instead (a
/// line of the same mapping, where a key starts at the mapping's column),
/// and say it the way the loader says it for other fields.
fn duplicate_key_at_its_line(text: &str, (at, message): (At, String)) -> (At, String) {
    let (Some((line, column)), Some(key)) = (
        at,
        message
            .split_once("duplicate entry with key \"")
            .and_then(|(_, rest)| rest.strip_suffix('"')),
    ) else {
        return (at, message);
    };
    let starts_key = |l: &str| {
        let Some(rest) = l.get(column - 1..) else {
            return false;
        };
        let indent_ok = l[..column - 1].chars().all(|c| c == ' ' || c == '-');
        let quoted = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ];
        indent_ok && quoted.iter().any(|q| rest.starts_with(q.as_str()))
    };
    let second = text
        .lines()
        .enumerate()
        .skip(line - 1)
        .filter(|(_, l)| starts_key(l))
        .nth(1)
        .map(|(n, _)| (n + 1, column));
    match second {
        Some(at) => (Some(at), format!("`{key}` is given twice")),
        None => (at, message),
    }
}

fn json_error(e: &serde_json::Error) -> (At, String) {
    let at = (e.line() > 0).then(|| (e.line(), e.column()));
    (at, bare_message(&e.to_string(), at))
}

/// A parser's message without the location it appends and without the
/// path serde_yaml puts first (`apps[1].name: `): the caller says both its
/// own way.
fn bare_message(message: &str, at: At) -> String {
    let mut message = message;
    if let Some((line, column)) = at {
        message = message
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(message);
    }
    if (message.starts_with("apps") || message.starts_with('['))
        && let Some((path, rest)) = message.split_once(": ")
        && !path.contains(char::is_whitespace)
    {
        message = rest;
    }
    message.to_string()
}

/// `FILE:LINE:COL: app N (NAME): message`; for JS, the location is in the
/// JSON node printed.
fn located(
    display: &str,
    format: Format,
    at: At,
    app: Option<usize>,
    names: &[Option<String>],
    message: &str,
) -> String {
    let mut text = match (format, at) {
        (Format::JavaScript, Some((line, column))) => {
            format!("{display} (evaluated by node; line {line}:{column} of its JSON)")
        }
        (Format::JavaScript, None) => format!("{display} (evaluated by node)"),
        (_, Some((line, column))) => format!("{display}:{line}:{column}"),
        (_, None) => display.to_string(),
    };
    if let Some(index) = app {
        text += &format!(": app {}", index + 1);
        if let Some(Some(name)) = names.get(index) {
            text += &format!(" ({name})");
        }
    }
    format!("{text}: {message}")
}

/// Each app's `name` (else its script's file stem) if it is a string, by
/// a lenient parse.
fn app_names(format: Format, text: &str) -> Result<Vec<Option<String>>, (At, String)> {
    let value: serde_json::Value = match format {
        Format::Yaml => match serde_yaml::from_str::<serde_yaml::Value>(text) {
            // Anything that does not convert has no names to offer.
            Ok(yaml) => serde_json::to_value(yaml).unwrap_or_default(),
            // serde_yaml places a duplicate key at the start of its mapping;
            // the strict read names the key at its own line, in its app.
            Err(e) if e.to_string().contains("duplicate entry with key") => return Ok(Vec::new()),
            Err(e) => return Err(yaml_error(&e)),
        },
        Format::Json | Format::JavaScript => {
            serde_json::from_str(text).map_err(|e| json_error(&e))?
        }
    };
    let apps = value.get("apps").unwrap_or(&value);
    Ok(apps
        .as_array()
        .map(|apps| {
            apps.iter()
                .map(|app| match app.get("name") {
                    Some(name) => name.as_str().map(str::to_string),
                    // As the daemon names it: the script's file stem.
                    None => pmdaemon_proto::script_stem(app.get("script")?.as_str()?)
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default())
}

impl Ecosystem {
    /// The app names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.apps.iter().map(|a| a.spec.name.as_str()).collect()
    }

    /// Whether any app has an `env_<environment>` section.
    pub fn has_environment(&self, environment: &str) -> bool {
        self.apps
            .iter()
            .any(|a| a.environments.contains_key(environment))
    }

    /// The apps to act on: those named by `only` (all when empty), in file
    /// order. An unknown name is a usage error that lists the file's apps.
    pub fn select(&self, only: &[String]) -> anyhow::Result<Vec<&AppDef>> {
        if let Some(unknown) = only.iter().find(|n| !self.names().contains(&n.as_str())) {
            let hint = app::suggest(unknown, self.names().into_iter())
                .map(|best| format!(" (did you mean {best}?)"))
                .unwrap_or_default();
            return Err(UsageError(format!(
                "--only: {} has no app named {unknown}{hint}; its apps are {}",
                self.display,
                self.names().join(", ")
            ))
            .into());
        }
        Ok(self
            .apps
            .iter()
            .filter(|a| only.is_empty() || only.contains(&a.spec.name))
            .collect())
    }

    /// `(app, dependency)` pairs where `only` selects the app but not the
    /// apps it depends on: the daemon will look for the dependency among
    /// the apps it already runs.
    pub fn dependencies_left_out(&self, only: &[String]) -> Vec<(&str, &str)> {
        if only.is_empty() {
            return Vec::new();
        }
        self.apps
            .iter()
            .filter(|a| only.contains(&a.spec.name))
            .flat_map(|a| {
                a.spec
                    .depends_on
                    .iter()
                    .filter(|d| !only.contains(&d.app))
                    .map(|d| (a.spec.name.as_str(), d.app.as_str()))
            })
            .collect()
    }

    /// The specs to send for `only` (see [`Self::select`]), with
    /// `env_<environment>` merged over `env` (an app without that section
    /// gets its `env` alone, as PM2 does).
    pub fn specs(
        &self,
        environment: Option<&str>,
        only: &[String],
    ) -> anyhow::Result<Vec<AppSpec>> {
        Ok(self
            .select(only)?
            .into_iter()
            .map(|app| app.spec_for(environment))
            .collect())
    }
}

impl AppDef {
    /// The spec with the environment chosen by `--env NAME`.
    pub fn spec_for(&self, environment: Option<&str>) -> AppSpec {
        let mut env: BTreeMap<String, String> = self.env.clone();
        if let Some(section) = environment.and_then(|e| self.environments.get(e)) {
            env.extend(section.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        AppSpec {
            env: env.into_iter().collect(),
            ..self.spec.clone()
        }
    }
}
