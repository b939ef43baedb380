//! Value rules that command-line flags and ecosystem files share: instance
//! counts, port specs, environment variable names. Each function takes the
//! name of the flag or field it checks (`--port`, `` `port` ``) and puts it
//! at the head of its error, so both callers report the same thing the same
//! way. Pure functions, no I/O; the daemon checks everything again.

/// Most instances one app may have (the daemon's limit too).
pub const MAX_INSTANCES: i32 = 1024;

/// Most rotated log files kept per log (the daemon's limit too).
pub const MAX_LOG_FILES: u32 = 100;

/// An instance count as PM2 writes it: `max` (one per CPU, sent as 0), `-1`
/// (one less than the CPUs) or 1..=[`MAX_INSTANCES`]. A literal 0 is
/// refused: it reads as "no instance", and `max` says what PM2 meant by it.
pub fn parse_instances(what: &str, value: &str) -> Result<i32, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("max") {
        return Ok(0);
    }
    match value.parse::<i64>() {
        Ok(n) => check_instances(what, n),
        Err(_) => Err(format!(
            "{what}: {value:?} is not an instance count; use a number, `max` (one per CPU) \
             or -1 (one less than the CPUs)"
        )),
    }
}

/// The numeric part of [`parse_instances`].
pub fn check_instances(what: &str, n: i64) -> Result<i32, String> {
    match n {
        0 => Err(format!(
            "{what}: 0 is not an instance count; use `max` for one per CPU"
        )),
        -1 => Ok(-1),
        n if n < 0 => Err(format!(
            "{what}: {n} is negative; use a number, `max` (one per CPU) or -1 (one less than \
             the CPUs)"
        )),
        n if n > i64::from(MAX_INSTANCES) => Err(format!(
            "{what}: {n} is more than the {MAX_INSTANCES} instances an app may have"
        )),
        n => Ok(i32::try_from(n).unwrap_or(MAX_INSTANCES)),
    }
}

/// A port spec: `3000` (one port), `3000-3003` (consecutive ports, one per
/// instance) or `auto:4000-4100` (first free ports of the range). Ports are
/// 1..=65535 and a range may not run backwards. Returns the spec as the
/// daemon takes it (`auto:` in lower case).
pub fn parse_port_spec(what: &str, value: &str) -> Result<String, String> {
    let bad = |why: String| {
        format!(
            "{what}: invalid port {value:?}: {why}; write a port (3000), a range (3000-3003) \
             or auto:FIRST-LAST (auto:4000-4100)"
        )
    };
    let port = |part: &str| -> Result<u32, String> {
        if part.is_empty() {
            return Err(bad("a port number is missing".into()));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{part:?} is not a port number")));
        }
        match part.parse::<u32>() {
            Ok(0) => Err(bad("port 0 cannot be assigned; ports are 1-65535".into())),
            Ok(n @ 1..=65535) => Ok(n),
            _ => Err(bad(format!("{part} is too large; ports are 1-65535"))),
        }
    };
    let (auto, body) = match value.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("auto:") => (true, &value[5..]),
        _ => (false, value),
    };
    match body.split_once('-') {
        None if auto => Err(bad(
            "auto: needs a range to pick from, such as auto:4000-4100".into(),
        )),
        None => Ok(port(body)?.to_string()),
        Some((first, last)) => {
            let (first, last) = (port(first)?, port(last)?);
            if first > last {
                return Err(bad(format!(
                    "the range runs backwards ({first} > {last}); write {last}-{first}"
                )));
            }
            let prefix = if auto { "auto:" } else { "" };
            Ok(format!("{prefix}{first}-{last}"))
        }
    }
}

/// An environment variable name: letters, digits and `_`, not starting with
/// a digit (what a shell can export, and what the daemon accepts for
/// `port_env`).
pub fn check_env_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: {name:?} is not an environment variable name (letters, digits and '_', \
             not starting with a digit)"
        ))
    }
}

/// The name of an ecosystem file's environment section (`env_NAME`), as
/// `--env NAME` selects it: non-empty, letters, digits, `_`, `-` and `.`.
pub fn check_environment_name(what: &str, name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "{what}: {name:?} is not an environment name such as production (letters, digits, \
             '_', '-' and '.')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_accept_pm2_forms() {
        assert_eq!(parse_instances("-i", "4"), Ok(4));
        assert_eq!(parse_instances("-i", "max"), Ok(0));
        assert_eq!(parse_instances("-i", "MAX"), Ok(0));
        assert_eq!(parse_instances("-i", "-1"), Ok(-1));
        for bad in ["0", "-2", "1025", "four", ""] {
            let err = parse_instances("-i", bad).unwrap_err();
            assert!(err.starts_with("-i: "), "{bad}: {err}");
        }
        assert!(parse_instances("-i", "0").unwrap_err().contains("max"));
    }

    #[test]
    fn port_specs_follow_the_three_forms() {
        assert_eq!(parse_port_spec("--port", "3000"), Ok("3000".into()));
        assert_eq!(
            parse_port_spec("--port", "3000-3003"),
            Ok("3000-3003".into())
        );
        assert_eq!(
            parse_port_spec("--port", "AUTO:4000-4100"),
            Ok("auto:4000-4100".into())
        );
        assert_eq!(parse_port_spec("--port", "7-7"), Ok("7-7".into()));
        for bad in [
            "0",
            "65536",
            "3003-3000",
            "auto:4000",
            "auto:",
            "",
            "-3000",
            "3000-",
            "http",
            " 3000",
            "+80",
        ] {
            let err = parse_port_spec("--port", bad).unwrap_err();
            assert!(err.starts_with("--port: invalid port"), "{bad}: {err}");
        }
        assert!(
            parse_port_spec("--port", "3003-3000")
                .unwrap_err()
                .contains("write 3000-3003")
        );
    }

    #[test]
    fn env_names() {
        assert!(check_env_name("x", "PORT").is_ok());
        assert!(check_env_name("x", "_P1").is_ok());
        for bad in ["", "1P", "A-B", "A B", "A=B"] {
            assert!(check_env_name("x", bad).is_err(), "{bad}");
        }
        assert!(check_environment_name("x", "production").is_ok());
        assert!(check_environment_name("x", "pre-prod.eu_1").is_ok());
        for bad in ["", "a=b", "a b", "a/b"] {
            assert!(check_environment_name("x", bad).is_err(), "{bad}");
        }
    }
}
