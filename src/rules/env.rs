//! Environment variables: what an app's variable may be called and hold
//! ([`check_env_var`]: anything `execve` can pass), what may carry its
//! port ([`check_port_env`]: a name a shell can export, not one the daemon
//! or the app's start needs).

use super::{InvalidInput, invalid};

/// The name used when an app does not say where its port goes.
pub const DEFAULT_PORT_ENV: &str = "PORT";

/// One variable of an app's environment: a name that is not empty and has
/// no `=` or NUL, a value without NUL (neither can cross `execve`), and not
/// `PMDAEMON_HOME`, which the daemon sets for every app.
pub fn check_env_var(name: &str, value: &str) -> Result<(), InvalidInput> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(invalid(format!(
            "{name:?} is not a valid variable name (no '=', no NUL, not empty)"
        )));
    }
    if value.contains('\0') {
        return Err(invalid(format!("the value of {name} contains a NUL byte")));
    }
    if name == crate::HOME_ENV {
        return Err(invalid(format!(
            "{name} is set by the daemon for every app (its own home); remove it"
        )));
    }
    Ok(())
}

/// Variables a caller's environment is not captured with (`pmd start`
/// sends its shell's environment, as PM2 does): the daemon's marker and
/// instance variables, which a caller that is itself an app carries and
/// which would make the new app look like that one, and pmd's own client
/// settings (`PMD_TOKEN` is a secret meant for pmd, not for apps), and
/// systemd's `NOTIFY_SOCKET` (see below).
pub fn is_captured(name: &str, value: &str) -> bool {
    const CLIENT: &[&str] = &[
        "PMD_HOST",
        "PMD_TOKEN",
        "PMD_TOKEN_FILE",
        "PMD_CA_CERT",
        "PMD_CONTEXT",
    ];
    let daemon_sets = matches!(
        name,
        "PMD_APP_NAME" | "PMD_ID" | "PMD_INSTANCE_ID" | "NODE_APP_INSTANCE"
    );
    // systemd's socket of the service the caller runs in: an app holding
    // it could report READY or STOPPING for that service.
    let service_manager = name == "NOTIFY_SOCKET";
    !daemon_sets
        && !service_manager
        && !CLIENT.contains(&name)
        && check_env_var(name, value).is_ok()
}

/// An environment variable name as a shell can export it: letters, digits
/// and `_`, not starting with a digit.
pub fn check_env_name(name: &str) -> Result<(), InvalidInput> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not an environment variable name (letters, digits and '_', not \
             starting with a digit)"
        )))
    }
}

/// Where an app's port may go (`port_env`): an [environment variable
/// name](check_env_name) that is not [reserved](reserved_port_env).
pub fn check_port_env(name: &str) -> Result<(), InvalidInput> {
    check_env_name(name)?;
    match reserved_port_env(name) {
        Some(why) => Err(invalid(format!(
            "{name} cannot carry the port: {why}; use PORT or a name of your own"
        ))),
        None => Ok(()),
    }
}

/// Why an app's port may not go in environment variable `name`
/// (`port_env`): the daemon sets it itself (`PMD_*`, `NODE_APP_INSTANCE`,
/// `PMDAEMON_HOME`), or replacing it breaks the app's start (`PATH`,
/// `HOME`). None when the name is free.
pub fn reserved_port_env(name: &str) -> Option<&'static str> {
    if name.starts_with("PMD_") || name == "NODE_APP_INSTANCE" || name == crate::HOME_ENV {
        Some("the daemon sets it for every app")
    } else if matches!(
        name,
        "PATH" | "HOME" | "USER" | "SHELL" | "LD_LIBRARY_PATH" | "LD_PRELOAD"
    ) {
        Some("the app and its interpreter need it as it is")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_what_execve_can_pass() {
        assert_eq!(check_env_var("NODE_ENV", "production"), Ok(()));
        // Any name a process can receive, not only what a shell exports.
        assert_eq!(check_env_var("a.b-c", ""), Ok(()));
        for bad in ["", "A=B", "A\0B"] {
            let err = check_env_var(bad, "x").unwrap_err().to_string();
            assert!(
                err.contains("is not a valid variable name"),
                "{bad:?}: {err}"
            );
        }
        let nul = check_env_var("TOKEN", "a\0b").unwrap_err().to_string();
        assert_eq!(nul, "the value of TOKEN contains a NUL byte");
        let home = check_env_var("PMDAEMON_HOME", "/x")
            .unwrap_err()
            .to_string();
        assert!(home.contains("set by the daemon"), "{home}");
    }

    #[test]
    fn captured_environment_leaves_out_markers_and_client_settings() {
        assert!(is_captured("NODE_ENV", "production"));
        assert!(is_captured("BASH_FUNC_f%%", "() { :; }"));
        for name in [
            "PMDAEMON_HOME",
            "PMD_ID",
            "PMD_APP_NAME",
            "PMD_INSTANCE_ID",
            "NODE_APP_INSTANCE",
            "PMD_TOKEN",
            "PMD_HOST",
            "NOTIFY_SOCKET",
        ] {
            assert!(!is_captured(name, "x"), "{name}");
        }
        assert!(!is_captured("A", "nul\0"));
    }

    #[test]
    fn names_are_what_a_shell_exports() {
        for ok in ["PORT", "_P1", "http_port"] {
            assert_eq!(check_env_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1P", "A-B", "A B", "A=B", "É"] {
            let err = check_env_name(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{bad:?} is not an environment variable name")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_port_goes_in_a_variable_of_its_own() {
        assert_eq!(check_port_env(DEFAULT_PORT_ENV), Ok(()));
        assert_eq!(check_port_env("HTTP_PORT"), Ok(()));
        for reserved in [
            "PATH",
            "HOME",
            "PMD_ID",
            "NODE_APP_INSTANCE",
            "PMDAEMON_HOME",
        ] {
            let err = check_port_env(reserved).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{reserved} cannot carry the port: ")),
                "{err}"
            );
        }
        assert!(check_port_env("1X").is_err());
    }
}
