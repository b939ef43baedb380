//! App names and targets: what a name may be (it becomes a file name) and
//! what a `target` string selects.

use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, invalid};
use crate::wording::Quoted;

/// Longest app name; names become file names (`logs/NAME-ID-out.log`).
pub const MAX_NAME_LEN: usize = 64;

/// Checks an app name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, not `all`, not all
/// digits (those are targets of their own).
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let rule = "names are 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(invalid(format!("app name is empty: {rule}")));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "app name {} is {} characters long: {rule}",
            Quoted(name),
            name.len()
        )));
    }
    if !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(format!(
            "invalid app name {}: {rule}",
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

    #[test]
    fn names_follow_the_file_name_rule() {
        for ok in ["api", "a", "web-1", "x.y_z", "9lives"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "all",
            "123",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_app_without_a_name_takes_its_scripts() {
        assert_eq!(default_name("./srv/api.js"), Ok("api".into()));
        assert_eq!(default_name("sleep"), Ok("sleep".into()));
        assert_eq!(default_name("/opt/bin/web-1.sh"), Ok("web-1".into()));
        assert_eq!(script_stem("./all.sh"), Some("all"));
        for bad in ["./all.sh", "/", "", "./123.py", "./my app.js"] {
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
    }
}
