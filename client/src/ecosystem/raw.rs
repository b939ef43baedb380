//! [`Raw`], any value of an ecosystem file as it was written, and the
//! checks that turn one into what a field means. Checks are pure and return
//! messages that start with the field's name; [`Check`] runs one inside the
//! deserializer's own visit call, which is what makes serde_yaml and
//! serde_json attach the value's line and column to the error.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value as the file wrote it (JSON's and YAML's common ground).
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Raw>),
    Map(Vec<(Raw, Raw)>),
}

impl Raw {
    /// What the value is, for "expected X, found Y".
    pub fn describe(&self) -> String {
        match self {
            Raw::Null => "no value (null)".into(),
            Raw::Bool(b) => format!("`{b}`"),
            Raw::Int(n) => format!("the number {n}"),
            Raw::UInt(n) => format!("the number {n}"),
            Raw::Float(x) => format!("the number {x}"),
            Raw::Str(s) => format!("the string {s:?}"),
            Raw::Seq(_) => "a list".into(),
            Raw::Map(_) => "a map".into(),
        }
    }

    /// A scalar as the text an environment variable or argument gets:
    /// strings as they are, numbers and booleans written out.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Raw::Str(s) => Some(s.clone()),
            Raw::Bool(b) => Some(b.to_string()),
            Raw::Int(n) => Some(n.to_string()),
            Raw::UInt(n) => Some(n.to_string()),
            Raw::Float(x) => Some(x.to_string()),
            Raw::Null | Raw::Seq(_) | Raw::Map(_) => None,
        }
    }

    /// An integer value, if the value is one.
    fn integer(&self) -> Option<i128> {
        match *self {
            Raw::Int(n) => Some(n.into()),
            Raw::UInt(n) => Some(n.into()),
            _ => None,
        }
    }
}

pub struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Raw, Raw>()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

impl<'de> serde::Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// Deserializes a value as [`Raw`] and runs `check` on it inside the
/// visitor, so that an error carries the value's location.
pub struct Check<'a, T> {
    check: Box<dyn FnOnce(Raw) -> Result<T, String> + 'a>,
    _out: PhantomData<T>,
}

impl<'a, T> Check<'a, T> {
    pub fn new(check: impl FnOnce(Raw) -> Result<T, String> + 'a) -> Self {
        Check {
            check: Box::new(check),
            _out: PhantomData,
        }
    }
}

impl<'de, T> DeserializeSeed<'de> for Check<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(CheckVisitor(self))
    }
}

struct CheckVisitor<'a, T>(Check<'a, T>);

impl<T> CheckVisitor<'_, T> {
    fn run<E: de::Error>(self, raw: Raw) -> Result<T, E> {
        (self.0.check)(raw).map_err(E::custom)
    }
}

impl<'de, T> Visitor<'de> for CheckVisitor<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.run(Raw::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.run(Raw::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.run(Raw::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.run(Raw::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.run(Raw::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        self.run(Raw::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        self.run(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        self.run(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        let raw = RawVisitor.visit_seq(seq)?;
        self.run(raw)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = RawVisitor.visit_map(map)?;
        self.run(raw)
    }
}

// ---- checks: `what` is the field as shown to people, e.g. "`instances`" ----

fn expected(what: &str, expectation: &str, found: &Raw) -> String {
    format!("{what}: expected {expectation}, found {}", found.describe())
}

/// A non-empty string without NUL bytes (paths, commands, names).
pub fn string(what: &str, raw: Raw) -> Result<String, String> {
    match raw {
        Raw::Str(s) if s.trim().is_empty() => Err(format!("{what}: is empty")),
        Raw::Str(s) if s.contains('\0') => Err(format!("{what}: contains a NUL byte")),
        Raw::Str(s) => Ok(s),
        other => Err(expected(what, "a string", &other)),
    }
}

/// PM2's `log_file`: `true` is the default file (`Some("")`), `false`
/// none, a string that path.
pub fn log_file(what: &str, raw: Raw) -> Result<Option<String>, String> {
    match raw {
        Raw::Bool(true) => Ok(Some(String::new())),
        Raw::Bool(false) => Ok(None),
        Raw::Str(_) => string(what, raw).map(Some),
        other => Err(expected(what, "true, false or a path", &other)),
    }
}

pub fn boolean(what: &str, raw: Raw) -> Result<bool, String> {
    match raw {
        Raw::Bool(b) => Ok(b),
        other => Err(expected(what, "true or false", &other)),
    }
}

/// Words for argv: a string split as a shell would (quotes, escapes), or a
/// list of strings (numbers and booleans written out).
pub fn words(what: &str, raw: Raw) -> Result<Vec<String>, String> {
    match raw {
        Raw::Str(s) => shell_words::split(&s).map_err(|e| {
            format!("{what}: cannot split {s:?} into words ({e}); check its quotes, or give a list")
        }),
        Raw::Seq(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item.scalar_text() {
                Some(text) if text.contains('\0') => {
                    Err(format!("{what}: item {} contains a NUL byte", i + 1))
                }
                Some(text) => Ok(text),
                None => Err(format!(
                    "{what}: item {} is {}; items are strings",
                    i + 1,
                    item.describe()
                )),
            })
            .collect(),
        other => Err(expected(what, "a string or a list of strings", &other)),
    }
}

/// One path or a list of paths (or globs).
pub fn paths(what: &str, raw: Raw) -> Result<Vec<String>, String> {
    match raw {
        Raw::Str(_) => Ok(vec![string(what, raw)?]),
        Raw::Seq(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| string(&format!("{what} item {}", i + 1), item))
            .collect(),
        other => Err(expected(what, "a string or a list of strings", &other)),
    }
}

/// A whole number in `0..=max`; digit-only strings are accepted too (a JS
/// config often reads them from process.env).
pub fn count(what: &str, raw: Raw, max: u64) -> Result<u64, String> {
    let n = match &raw {
        Raw::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i128>().ok()
        }
        other => other.integer(),
    };
    match n {
        Some(n) if n < 0 => Err(format!("{what}: {n} is negative")),
        Some(n) if n > i128::from(max) => Err(format!("{what}: {n} is more than {max}")),
        Some(n) => Ok(u64::try_from(n).unwrap_or(max)),
        None => Err(expected(what, "a whole number", &raw)),
    }
}

/// A duration: a number of milliseconds (PM2's unit) or a string such as
/// `5s` or `500ms`; at most 24 h.
pub fn duration(what: &str, raw: Raw) -> Result<Duration, String> {
    match raw {
        Raw::Str(s) => pmdaemon_proto::parse_duration(what, &s).map_err(|e| e.0),
        Raw::Int(n) if n < 0 => Err(format!("{what}: {n} is negative")),
        Raw::Int(_) | Raw::UInt(_) => {
            let ms = count(what, raw, u64::MAX)?;
            pmdaemon_proto::check_duration(what, Duration::from_millis(ms)).map_err(|e| e.0)
        }
        Raw::Float(x) => Err(format!("{what}: {x} is not a whole number of milliseconds")),
        other => Err(expected(
            what,
            "milliseconds or a duration such as \"5s\"",
            &other,
        )),
    }
}

/// A size in bytes (number) or with a unit (`10M`); more than 0.
pub fn size(what: &str, raw: Raw) -> Result<u64, String> {
    let bytes = match raw {
        Raw::Str(s) => pmdaemon_proto::parse_size(what, &s).map_err(|e| e.0)?,
        Raw::Int(_) | Raw::UInt(_) => count(what, raw, u64::MAX)?,
        other => return Err(expected(what, "a size such as \"10M\" or bytes", &other)),
    };
    if bytes == 0 {
        return Err(format!("{what}: must be more than 0 bytes"));
    }
    Ok(bytes)
}

/// `max` or a count (see [`crate::rules::parse_instances`]).
pub fn instances(what: &str, raw: Raw) -> Result<i32, String> {
    match raw {
        Raw::Str(s) => crate::rules::parse_instances(what, &s),
        Raw::Int(_) | Raw::UInt(_) => {
            let n = raw.integer().unwrap_or_default();
            crate::rules::check_instances(what, i64::try_from(n).unwrap_or(i64::MAX))
        }
        other => Err(expected(what, "a number or \"max\"", &other)),
    }
}

/// A port spec; a plain number is one port.
pub fn port(what: &str, raw: Raw) -> Result<String, String> {
    match raw {
        Raw::Str(s) => crate::rules::parse_port_spec(what, &s),
        Raw::Int(_) | Raw::UInt(_) => {
            let n = raw.integer().unwrap_or_default();
            crate::rules::parse_port_spec(what, &n.to_string())
        }
        other => Err(expected(
            what,
            "a port (3000), a range (\"3000-3003\") or \"auto:4000-4100\"",
            &other,
        )),
    }
}

/// A signal that stops a process, as its canonical name (`SIGINT`).
pub fn stop_signal(what: &str, raw: Raw) -> Result<String, String> {
    let text = match raw {
        Raw::Str(s) => s,
        Raw::Int(_) | Raw::UInt(_) => raw.scalar_text().unwrap_or_default(),
        other => return Err(expected(what, "a signal name such as \"SIGINT\"", &other)),
    };
    pmdaemon_proto::parse_stop_signal(what, &text)
        .map(|sig| sig.as_str().to_string())
        .map_err(|e| e.0)
}

/// An environment: a map of variable names to strings, numbers or booleans.
pub fn env_map(what: &str, raw: Raw) -> Result<BTreeMap<String, String>, String> {
    let Raw::Map(entries) = raw else {
        return Err(expected(what, "a map of variables", &raw));
    };
    let mut env = BTreeMap::new();
    for (key, value) in entries {
        let Raw::Str(key) = key else {
            return Err(format!(
                "{what}: variable names are strings, found {}",
                key.describe()
            ));
        };
        let text = value.scalar_text();
        crate::rules::check_env_var(what, &key, text.as_deref().unwrap_or_default())?;
        let Some(text) = text else {
            return Err(format!(
                "{what}: {key} is {}; values are strings, numbers or booleans",
                value.describe()
            ));
        };
        if env.insert(key.clone(), text).is_some() {
            return Err(format!("{what}: {key} is given twice"));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            words("`args`", Raw::Str(r#"--name "a b" 'c d' e\ f"#.into())).unwrap(),
            ["--name", "a b", "c d", "e f"]
        );
        assert!(words("`args`", Raw::Str("\"open".into())).is_err());
        assert_eq!(
            words(
                "`args`",
                Raw::Seq(vec![Raw::Str("-p".into()), Raw::UInt(80), Raw::Bool(true)])
            )
            .unwrap(),
            ["-p", "80", "true"]
        );
        let err = words("`args`", Raw::Seq(vec![Raw::Map(vec![])])).unwrap_err();
        assert_eq!(err, "`args`: item 1 is a map; items are strings");
    }

    #[test]
    fn durations_take_ms_or_units() {
        assert_eq!(
            duration("`d`", Raw::UInt(1500)),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            duration("`d`", Raw::Str("5s".into())),
            Ok(Duration::from_secs(5))
        );
        assert!(
            duration("`d`", Raw::Int(-1))
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            duration("`d`", Raw::Str("soon".into()))
                .unwrap_err()
                .starts_with("`d`: ")
        );
        assert!(duration("`d`", Raw::UInt(100_000_000)).is_err());
        assert!(duration("`d`", Raw::Float(1.5)).is_err());
    }

    #[test]
    fn env_values_are_stringified() {
        let env = env_map(
            "`env`",
            Raw::Map(vec![
                (Raw::Str("A".into()), Raw::UInt(1)),
                (Raw::Str("B".into()), Raw::Bool(false)),
                (Raw::Str("C".into()), Raw::Str("x".into())),
                (Raw::Str("D".into()), Raw::Float(1.5)),
            ]),
        )
        .unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "false");
        assert_eq!(env["C"], "x");
        assert_eq!(env["D"], "1.5");
        let err = env_map("`env`", Raw::Map(vec![(Raw::Str("A".into()), Raw::Null)]));
        assert!(err.unwrap_err().contains("A is no value"));
    }

    #[test]
    fn counts_sizes_and_signals() {
        assert_eq!(count("`n`", Raw::Str("12".into()), 100), Ok(12));
        assert!(count("`n`", Raw::Int(-3), 100).is_err());
        assert!(count("`n`", Raw::UInt(101), 100).is_err());
        assert!(count("`n`", Raw::Float(1.0), 100).is_err());
        assert_eq!(size("`s`", Raw::Str("10M".into())), Ok(10 << 20));
        assert!(size("`s`", Raw::UInt(0)).is_err());
        assert_eq!(
            stop_signal("`sig`", Raw::Str("int".into())),
            Ok("SIGINT".into())
        );
        assert_eq!(stop_signal("`sig`", Raw::UInt(15)), Ok("SIGTERM".into()));
        assert!(stop_signal("`sig`", Raw::Str("SIGSTOP".into())).is_err());
    }
}
