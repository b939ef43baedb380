//! PM2's per-instance settings, as values: the variable that receives the
//! instance index (`instance_var`), the variable incremented per instance
//! (`increment_var`), the exit codes that do not restart an app
//! (`stop_exit_codes`), and the wait for an app's "ready" message
//! (`listen_timeout`). The CLI, the ecosystem reader and the daemon check
//! them here.

use std::collections::BTreeMap;

use super::{InvalidInput, check_env_name, invalid, reserved_port_env};

/// The variable that receives the instance index when an app does not name
/// one (PM2's `instance_var` default).
pub const DEFAULT_INSTANCE_VAR: &str = "NODE_APP_INSTANCE";

/// How long an app with `wait_ready` may take to send "ready" (PM2's
/// GRACEFUL_LISTEN_TIMEOUT).
pub const DEFAULT_LISTEN_TIMEOUT_MS: u64 = 3_000;

/// The file descriptor of the app's end of its IPC channel, as Node's
/// `child_process.fork` places it (stdio 0-2, then the channel).
pub const IPC_CHANNEL_FD: i32 = 3;

/// What may receive the instance index: a variable name a shell can
/// export, not one the daemon sets for its own use (`PMD_*`,
/// `PMDAEMON_HOME`) or the app's start needs (`PATH`, `HOME`...).
/// `NODE_APP_INSTANCE` is the default and allowed.
pub fn check_instance_var(name: &str) -> Result<(), InvalidInput> {
    check_var(name, "the instance index")
}

/// What may be incremented per instance: as [`check_instance_var`].
pub fn check_increment_var(name: &str) -> Result<(), InvalidInput> {
    check_var(name, "a per-instance value")
}

fn check_var(name: &str, what: &str) -> Result<(), InvalidInput> {
    check_env_name(name)?;
    if name == DEFAULT_INSTANCE_VAR {
        return Ok(());
    }
    match reserved_port_env(name) {
        Some(why) => Err(invalid(format!(
            "{name} cannot carry {what}: {why}; use a name of your own"
        ))),
        None => Ok(()),
    }
}

/// The base value of `increment_var` in the app's `env`: an integer that
/// stays one for every instance (`base + instances - 1`). Instance N gets
/// `base + N`.
pub fn increment_base(
    name: &str,
    env: &BTreeMap<String, String>,
    instances: u32,
) -> Result<i64, InvalidInput> {
    let Some(value) = env.get(name) else {
        return Err(invalid(format!(
            "{name} is not in the app's env: increment_var needs its base value there \
             (e.g. env: {{ {name}: 3000 }}); instance 0 gets it, instance 1 one more..."
        )));
    };
    let base: i64 = value.trim().parse().map_err(|_| {
        invalid(format!(
            "{name}={value:?} in the app's env is not an integer: increment_var adds the \
             instance index to it"
        ))
    })?;
    base.checked_add(i64::from(instances.saturating_sub(1)))
        .ok_or_else(|| invalid(format!("{name}={base} + the instance index overflows")))?;
    Ok(base)
}

/// An exit code of `stop_exit_codes`: what a process can exit with, 0-255.
pub fn check_stop_exit_code(code: i64) -> Result<i32, InvalidInput> {
    u8::try_from(code).map(i32::from).map_err(|_| {
        invalid(format!(
            "{code} is not an exit code: a process exits with 0-255"
        ))
    })
}

/// One exit code as written (`3`; the CLI splits `0,3`), 0-255.
pub fn parse_stop_exit_code(value: &str) -> Result<i32, InvalidInput> {
    let w = value.trim();
    let n: i64 = w.parse().map_err(|_| {
        invalid(format!(
            "{w:?} is not an exit code: give numbers 0-255, e.g. 0,3"
        ))
    })?;
    check_stop_exit_code(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_goes_in_a_variable_of_the_apps() {
        for ok in ["NODE_APP_INSTANCE", "INSTANCE_ID", "worker_index"] {
            assert_eq!(check_instance_var(ok), Ok(()), "{ok}");
        }
        for bad in ["PMD_ID", "PATH", "PMDAEMON_HOME", "1X", ""] {
            assert!(check_instance_var(bad).is_err(), "{bad}");
        }
        let err = check_increment_var("PATH").unwrap_err().to_string();
        assert!(
            err.starts_with("PATH cannot carry a per-instance value"),
            "{err}"
        );
    }

    #[test]
    fn the_increment_starts_from_an_integer_in_env() {
        let env: BTreeMap<String, String> = [("PORT".to_string(), "3000".to_string())].into();
        assert_eq!(increment_base("PORT", &env, 4), Ok(3000));
        let missing = increment_base("HTTP_PORT", &env, 2)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("HTTP_PORT is not in the app's env"),
            "{missing}"
        );
        let word: BTreeMap<String, String> = [("PORT".to_string(), "http".to_string())].into();
        let err = increment_base("PORT", &word, 2).unwrap_err().to_string();
        assert!(err.contains("is not an integer"), "{err}");
        let max: BTreeMap<String, String> = [("N".to_string(), i64::MAX.to_string())].into();
        assert_eq!(increment_base("N", &max, 1), Ok(i64::MAX));
        assert!(increment_base("N", &max, 2).is_err());
    }

    #[test]
    fn exit_codes_are_0_to_255() {
        assert_eq!(parse_stop_exit_code("0"), Ok(0));
        assert_eq!(parse_stop_exit_code(" 255"), Ok(255));
        for bad in ["256", "-1", "x", ""] {
            assert!(parse_stop_exit_code(bad).is_err(), "{bad}");
        }
    }
}
