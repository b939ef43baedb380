//! Ecosystem files: PM2's way of describing several apps in one file, read
//! by `pmd start|restart|reload|stop|delete|validate FILE`.
//!
//! A FILE is an existing `.yaml`/`.yml`/`.json` file (`.json` is read as
//! JSON5, as PM2 reads it), or a `.js`/`.cjs`/`.mjs` file whose name
//! contains `.config.` or starts with `ecosystem` (PM2's
//! `ecosystem.config.js`), which `node` evaluates into JSON ([`node`]). The
//! file holds `apps:` (or PM2's `pm2:`), a bare list of apps, or one app;
//! each app's keys are looked up in the catalogue ([`keys`]: every key PM2
//! knows, pmd's own, their aliases, what pmd does with each) and checked
//! by [`app`]; `script` takes PM2's shapes ([`script`]).
//!
//! What pmd does not honour, or neither pmd nor PM2 knows, is a warning,
//! never a refusal: one line per key and file, `FILE:LINE:COL: app N
//! (NAME): ...` at its first occurrence (found by a second read that stops
//! there). A wrong type, a bad value or a duplicate name fails the whole
//! file with the same kind of location, and the caller sends nothing;
//! each bad value is listed (the read is done again with it skipped),
//! then the warnings. `strict` (`start --strict`,
//! `validate`) makes the warnings an error too. For a JS file the line and
//! column are those of the JSON that node printed, and the message says
//! so.
//!
//! Talks to nothing but the file system and, for JS files, a `node` child.

mod app;
mod deps;
mod keys;
mod node;
#[cfg(test)]
mod proptests;
mod raw;
pub mod script;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
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
    /// Keys accepted but not honoured, or unknown, one line each (see
    /// [`Parsed::warnings`]).
    pub warnings: Vec<String>,
}

/// Reads and checks the ecosystem file at `path` (evaluating it with node
/// when it is JavaScript). With `strict`, a warning fails the load like an
/// error, and the error lists every warning.
pub fn load(path: &str, strict: bool) -> anyhow::Result<Ecosystem> {
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
    let parsed = parse_in(path, format, &text, Some(Path::new(&dir)))?;
    if strict && !parsed.warnings.is_empty() {
        let count = parsed.warnings.len();
        bail!(
            "{path}: {count} warning{} that --strict makes {}:\n  {}",
            if count == 1 { "" } else { "s" },
            if count == 1 { "an error" } else { "errors" },
            parsed.warnings.join("\n  ")
        );
    }
    Ok(Ecosystem {
        display: path.to_string(),
        dir,
        apps: parsed.apps,
        notes: parsed.notes,
        warnings: parsed.warnings,
    })
}

/// What [`parse`] makes of a file.
#[derive(Debug)]
pub struct Parsed {
    pub apps: Vec<AppDef>,
    /// Things to tell that are not problems (an ignored `deploy` section).
    pub notes: Vec<String>,
    /// One line per key pmd does not honour or know (however many apps
    /// have it), with the place of its first occurrence.
    pub warnings: Vec<String>,
}

/// Checks `text` (the file's, or node's JSON for a JS file). Errors and
/// warnings name `display`, the line and column, and the app. An error
/// is followed by the warnings found before it, one a line.
///
/// `depends_on` is checked across the file once every app is read: each
/// dependency must be an app of the file, and there must be no cycle. Such
/// an error is raised at the offending `depends_on` entry by a second read
/// (see [`app::Ctx::fail_at`]), so it has a line and column too.
pub fn parse(display: &str, format: Format, text: &str) -> anyhow::Result<Parsed> {
    parse_in(display, format, text, None)
}

/// [`parse`] for a file in directory `dir`, against which each app's
/// `script` is shaped ([`script::shape`]: a directory, a command line).
pub fn parse_in(
    display: &str,
    format: Format,
    text: &str,
    dir: Option<&Path>,
) -> anyhow::Result<Parsed> {
    // A lenient first pass gives each app's name for messages about fields
    // that come before the `name` key, the shape of the top level (and
    // reports syntax errors).
    let mut first = prepass(format, text)
        .map_err(|(at, message)| anyhow!(located(display, format, at, None, &[], &message)))?;
    first.dir = dir.map(Path::to_path_buf);
    let names = &first.names;
    // Every error (see `MAX_ERRORS`), then the warnings found on the way.
    let fail_all = |errors: &[Failure], findings: &[app::Finding]| {
        let mut lines: Vec<String> = errors
            .iter()
            .map(|(at, app, message)| located(display, format, *at, *app, names, message))
            .collect();
        let mut said = lines.remove(0);
        for line in lines {
            said += &format!("\nerror: {line}");
        }
        for warning in warnings(display, format, text, &first, findings) {
            said += &format!("\nwarning: {warning}");
        }
        anyhow!(said)
    };
    let fail = |failure: Failure, findings: &[app::Finding]| fail_all(&[failure], findings);
    let read_once = |fail_at| read(format, text, &first, fail_at, None);
    // A bad value fails the read at its key; the read is done again with
    // that key skipped, to find the next one, so that one run lists them
    // all. An error elsewhere (a missing `script`, a duplicate key) ends
    // the list: after a skip it may only be the skip's consequence, and is
    // not said.
    let mut errors: Vec<Failure> = Vec::new();
    let (apps, notes, findings) = loop {
        match read_once(None) {
            Ok(read) if errors.is_empty() => break read,
            Ok((_, _, findings)) => return Err(fail_all(&errors, &findings)),
            Err(failed) => {
                let (failure, findings, at_key) = *failed;
                if errors.is_empty() || at_key.is_some() {
                    errors.push(failure);
                }
                match at_key {
                    Some(key) if errors.len() < MAX_ERRORS => first.skip.borrow_mut().push(key),
                    _ => return Err(fail_all(&errors, &findings)),
                }
            }
        }
    };
    if let Err(fail_at) = deps::check(&apps) {
        let (app, _, message) = fail_at.clone();
        return Err(match read_once(Some(fail_at)) {
            Err(failed) => fail(failed.0, &failed.1),
            // Not expected: the second read raises it. Said without a place.
            Ok(_) => fail((None, Some(app), message), &findings),
        });
    }
    let warnings = warnings(display, format, text, &first, &findings);
    Ok(Parsed {
        apps,
        notes,
        warnings,
    })
}

/// An error: where, in which app, what.
type Failure = (At, Option<usize>, String);

/// Most errors one run lists.
const MAX_ERRORS: usize = 20;

/// A key of an app as written: (app, key).
type KeyAt = (Option<usize>, String);

/// A read's apps, notes and findings.
type ReadOk = (Vec<AppDef>, Vec<String>, Vec<app::Finding>);

/// A read's error, the findings made before it, and the key whose value
/// it is about (if it is about one).
type ReadFailure = (Failure, Vec<app::Finding>, Option<KeyAt>);

/// One strict read of the file; `fail_at` as [`app::Ctx::fail_at`],
/// `locate` as [`app::Ctx::locate`]. Either way, the findings made.
fn read(
    format: Format,
    text: &str,
    first: &Prepass,
    fail_at: Option<(usize, usize, String)>,
    locate: Option<(Option<usize>, String)>,
) -> Result<ReadOk, Box<ReadFailure>> {
    let mut ctx = app::Ctx::default();
    (ctx.fail_at, ctx.locate) = (fail_at, locate);
    (ctx.shape, ctx.has_apps) = (first.shape, first.has_apps);
    ctx.dir.clone_from(&first.dir);
    ctx.skip.clone_from(&first.skip.borrow());
    let seed = app::FileSeed { ctx: &ctx };
    use serde::de::DeserializeSeed;
    let result = match format {
        Format::Yaml => seed
            .deserialize(serde_yaml::Deserializer::from_str(text))
            .map_err(|e| duplicate_key_at_its_line(text, yaml_error(&e))),
        Format::Json => {
            let mut de = json5::Deserializer::from_str(text);
            seed.deserialize(&mut de).map_err(|e| json5_error(&e))
        }
        Format::JavaScript => {
            let mut de = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut de)
                .and_then(|apps| de.end().map(|()| apps))
                .map_err(|e| json_error(&e))
        }
    };
    let findings = ctx.findings.take();
    match result {
        Ok(apps) => Ok((apps, ctx.notes.take(), findings)),
        Err((at, message)) => Err(Box::new((
            (at, ctx.app.get(), message),
            findings,
            ctx.reading.take(),
        ))),
    }
}

/// The warnings of `findings`: one per group (a key of the catalogue, or
/// an unknown key), at the place of its first occurrence, which a read
/// that stops there finds; other apps with it are named.
fn warnings(
    display: &str,
    format: Format,
    text: &str,
    first: &Prepass,
    findings: &[app::Finding],
) -> Vec<String> {
    let mut groups: Vec<(&app::Finding, Vec<usize>)> = Vec::new();
    for finding in findings {
        match groups.iter_mut().find(|(f, _)| f.group == finding.group) {
            Some((_, others)) => others.extend(finding.app),
            None => groups.push((finding, Vec::new())),
        }
    }
    groups
        .into_iter()
        .map(|(finding, others)| {
            let locate = Some((finding.app, finding.key.clone()));
            let at = match read(format, text, first, None, locate) {
                Err(failed) if failed.0.2 == app::LOCATED => failed.0.0,
                _ => None,
            };
            let mut message = finding.message.clone();
            let mut others: Vec<usize> = others
                .into_iter()
                .filter(|a| Some(*a) != finding.app)
                .collect();
            others.dedup();
            // A few apps by number; past that, how many.
            const NAMED: usize = 5;
            if !others.is_empty() {
                let mut list: Vec<String> = others
                    .iter()
                    .take(NAMED)
                    .map(|a| (a + 1).to_string())
                    .collect();
                if others.len() > NAMED {
                    list.push(format!("{} more", others.len() - NAMED));
                }
                message += &format!(
                    " (also in app{} {})",
                    if others.len() == 1 { "" } else { "s" },
                    list.join(", ")
                );
            }
            located(display, format, at, finding.app, &first.names, &message)
        })
        .collect()
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

fn json5_error(e: &json5::Error) -> (At, String) {
    let at = e.position().map(|p| (p.line + 1, p.column + 1));
    (at, bare_message(&e.to_string(), at))
}

/// Deepest nesting of lists and maps a JSON5 file may have (serde_json's
/// and serde_yaml's limit is 128 too).
const MAX_JSON5_DEPTH: usize = 128;

/// Refuses JSON5 nested deeper than [`MAX_JSON5_DEPTH`]: the json5 crate
/// recurses without a limit, and deep enough input would overflow the
/// stack. Brackets in strings and comments do not count.
fn check_json5_depth(text: &str) -> Result<(), (At, String)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if c == '\n' {
            (line, column) = (line + 1, 0);
        } else {
            column += 1;
        }
        match (quote, c) {
            (Some(_), '\\') if chars.next().is_some() => column += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '/') if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        (line, column) = (line + 1, 0);
                        break;
                    }
                }
            }
            (None, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        (line, column) = (line + 1, 0);
                    }
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
            }
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_JSON5_DEPTH {
                    return Err((
                        Some((line, column)),
                        format!("nested more than {MAX_JSON5_DEPTH} levels deep"),
                    ));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
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

/// What a lenient first read tells about a file.
#[derive(Debug, Default)]
struct Prepass {
    /// Each app's `name` (else its script's file stem) if it is a string.
    names: Vec<Option<String>>,
    shape: app::Shape,
    has_apps: bool,
    /// The file's directory, if it is on this machine.
    dir: Option<std::path::PathBuf>,
    /// Keys whose value failed an earlier read, skipped by the next ones.
    skip: std::cell::RefCell<Vec<KeyAt>>,
}

/// The lenient first read: names, shape, and syntax errors.
fn prepass(format: Format, text: &str) -> Result<Prepass, (At, String)> {
    let value: serde_json::Value = match format {
        Format::Yaml => match serde_yaml::from_str::<serde_yaml::Value>(text) {
            // Anything that does not convert has no names to offer.
            Ok(yaml) => serde_json::to_value(yaml).unwrap_or_default(),
            // serde_yaml places a duplicate key at the start of its mapping;
            // the strict read names the key at its own line, in its app.
            Err(e) if e.to_string().contains("duplicate entry with key") => {
                return Ok(yaml_shape_by_lines(text));
            }
            Err(e) => return Err(yaml_error(&e)),
        },
        Format::Json => {
            check_json5_depth(text)?;
            json5::from_str(text).map_err(|e| json5_error(&e))?
        }
        Format::JavaScript => serde_json::from_str(text).map_err(|e| json_error(&e))?,
    };
    let wrapper = value.get("apps").or_else(|| value.get("pm2"));
    let one_app = value.as_object().is_some_and(|top| {
        wrapper.is_none()
            && top
                .keys()
                .any(|k| keys::lookup(k).is_some() || k.starts_with("env_"))
    });
    let apps = match wrapper {
        Some(apps) if apps.is_object() => std::slice::from_ref(apps),
        Some(apps) => apps.as_array().map(Vec::as_slice).unwrap_or_default(),
        None if one_app => std::slice::from_ref(&value),
        None => value.as_array().map(Vec::as_slice).unwrap_or_default(),
    };
    let name_of = |app: &serde_json::Value| -> Option<String> {
        let field = |wanted: keys::Field| {
            app.as_object()?
                .iter()
                .find(|(k, _)| keys::field(k) == Some(wanted))
                .map(|(_, v)| v)
        };
        match field(keys::Field::Name) {
            Some(name) => name.as_str().map(str::to_string),
            // As the daemon names it: the script's file stem.
            None => pmdaemon_proto::script_stem(field(keys::Field::Script)?.as_str()?)
                .map(str::to_string),
        }
    };
    Ok(Prepass {
        names: apps.iter().map(name_of).collect(),
        shape: if one_app {
            app::Shape::OneApp
        } else {
            app::Shape::Wrapped
        },
        has_apps: wrapper.is_some(),
        ..Prepass::default()
    })
}

/// The shape of a YAML file that serde_yaml cannot read leniently (a
/// duplicate key), by its unindented lines.
fn yaml_shape_by_lines(text: &str) -> Prepass {
    let top_keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']))
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        })
        .collect();
    let has_apps = top_keys.iter().any(|k| *k == "apps" || *k == "pm2");
    let one_app = !has_apps && top_keys.iter().any(|k| keys::lookup(k).is_some());
    Prepass {
        names: Vec::new(),
        shape: if one_app {
            app::Shape::OneApp
        } else {
            app::Shape::Wrapped
        },
        has_apps,
        ..Prepass::default()
    }
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
        let mut spec = AppSpec {
            ..self.spec.clone()
        };
        // A PM2 cluster on one port of its `env`: that port, as the chosen
        // environment has it, is the public one; without one, unbalanced.
        if let Some(var) = &self.balance_env {
            match env.get(var).and_then(|p| p.trim().parse::<u16>().ok()) {
                Some(port) => spec.port = port.to_string(),
                None => spec.balance = None,
            }
        }
        spec.env = env.into_iter().collect();
        spec
    }
}
