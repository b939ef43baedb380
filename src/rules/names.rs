//! App names and targets: what a name may be, the file-safe form a name
//! takes in file names, and what a `target` string selects.

use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, invalid};
use crate::wording::Quoted;

/// Longest app name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Checks an app name as PM2 takes them (spaces, dots, any script):
/// 1-64 characters, no control character (a newline would forge log
/// lines), no `/`, no space at either end, not `.` or `..`, not starting
/// with `-` (it would read as a flag), not `all`, not all digits (those
/// are targets of their own). A name never becomes a path as it is: see
/// [`file_safe_name`].
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    const RULE: &str = "names are 1-64 characters, without `/` or control characters";
    if name.is_empty() {
        return Err(invalid(format!("app name is empty: {RULE}")));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_LEN {
        return Err(invalid(format!(
            "app name {} is {chars} characters long: {RULE}",
            Quoted(name)
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(invalid(format!(
            "invalid app name {}: it contains the control character {:?}; {RULE}",
            Quoted(name),
            c
        )));
    }
    if name.contains('/') {
        return Err(invalid(format!(
            "invalid app name {}: it contains `/`; {RULE}",
            Quoted(name)
        )));
    }
    if name.trim() != name {
        return Err(invalid(format!(
            "invalid app name {}: it starts or ends with a space",
            Quoted(name)
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid(format!("{} cannot be an app name", Quoted(name))));
    }
    if name.starts_with('-') {
        return Err(invalid(format!(
            "invalid app name {}: it starts with `-`, which reads as a flag",
            Quoted(name)
        )));
    }
    if name == "all" {
        return Err(invalid("'all' cannot be an app name: it selects every app"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "app name {} is all digits, which would read as a process id",
            Quoted(name)
        )));
    }
    Ok(())
}

/// The stricter rule of names that are identifiers rather than labels
/// (token names, context names): `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, not
/// `all`, not all digits.
pub fn validate_plain_name(name: &str) -> Result<(), InvalidInput> {
    let rule = "names are 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(invalid(format!("name is empty: {rule}")));
    };
    if name.len() > MAX_NAME_LEN
        || !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(format!("invalid name {}: {rule}", Quoted(name))));
    }
    validate_name(name)
}

/// The form of an app name that goes into file names (`logs/NAME-ID-
/// out.log`): letters, digits, `.`, `_` and `-` kept, anything else (a
/// space, a non-ASCII letter) and a leading `.` made `_`. Two names can
/// share a form (`a b`, `a_b`): file names add the app's id, which is
/// unique, so their files never collide.
pub fn file_safe_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            '.' if i == 0 => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => '_',
        })
        .collect()
}

/// The file stem of an app's script (`./api.js` → `api`), which names the
/// app when it has no name of its own; None when there is none.
pub fn script_stem(script: &str) -> Option<&str> {
    std::path::Path::new(script).file_stem()?.to_str()
}

/// The name an app gets when it has none: its [script's stem](script_stem),
/// which must be a valid name itself (the refusal says why it is not).
pub fn default_name(script: &str) -> Result<String, InvalidInput> {
    let stem = script_stem(script).unwrap_or_default();
    validate_name(stem)?;
    Ok(stem.to_string())
}

/// What a `target` string selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Id(u32),
    Name(String),
}

impl FromStr for Target {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Target::All);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Target::Id)
                .map_err(|_| invalid(format!("process id {} is out of range", Quoted(s))));
        }
        validate_name(s).map_err(|e| invalid(format!("invalid target: {e}")))?;
        Ok(Target::Name(s.to_string()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Id(id) => write!(f, "{id}"),
            Target::Name(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names PM2 accepts (spaces, dots, unicode) are names (issue 11);
    /// what would reach a path or forge a log line is not.
    #[test]
    fn names_are_what_pm2_takes_but_never_a_path() {
        let unicode = "é".repeat(64);
        for ok in [
            "api",
            "a",
            "web-1",
            "x.y_z",
            "9lives",
            "my app",
            ".hidden",
            "é",
            "api (v2)",
            "日本語",
            unicode.as_str(),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "all",
            "123",
            "-x",
            "a/b",
            "../x",
            "/",
            ".",
            "..",
            "a\nb",
            "a\0b",
            "a\rb",
            "a\tb",
            "a\u{1b}[31m",
            "a\u{2028}b",
            " a",
            "a ",
            long.as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_names_keep_the_strict_rule() {
        for ok in ["ci", "web-1", "x.y_z"] {
            assert_eq!(validate_plain_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "all", "123", "-x", ".hidden", "a b", "é"] {
            assert!(validate_plain_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_safe_names_keep_only_safe_characters() {
        assert_eq!(file_safe_name("api"), "api");
        assert_eq!(file_safe_name("web-1.v2_x"), "web-1.v2_x");
        assert_eq!(file_safe_name("my app"), "my_app");
        assert_eq!(file_safe_name(".env"), "_env");
        assert_eq!(file_safe_name("café"), "caf_");
        assert_eq!(file_safe_name("a..b"), "a..b");
    }

    #[test]
    fn an_app_without_a_name_takes_its_scripts() {
        assert_eq!(default_name("./srv/api.js"), Ok("api".into()));
        assert_eq!(default_name("sleep"), Ok("sleep".into()));
        assert_eq!(default_name("/opt/bin/web-1.sh"), Ok("web-1".into()));
        assert_eq!(script_stem("./all.sh"), Some("all"));
        assert_eq!(default_name("./my app.js"), Ok("my app".into()));
        for bad in ["./all.sh", "/", "", "./123.py", "./-x.sh"] {
            assert!(default_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_parse_to_all_id_or_name() {
        assert_eq!("all".parse(), Ok(Target::All));
        assert_eq!("12".parse(), Ok(Target::Id(12)));
        assert_eq!("api".parse(), Ok(Target::Name("api".into())));
        assert!("99999999999".parse::<Target>().is_err());
        assert!("../x".parse::<Target>().is_err());
        assert_eq!("my app".parse(), Ok(Target::Name("my app".into())));
    }
}
