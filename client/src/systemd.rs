//! The systemd unit of `pmd startup`: which one (scope, name, directory,
//! whose home), and its text. No I/O but reading the environment and
//! /etc/passwd; `commands::startup` writes it and runs systemctl.
//!
//! Names, one unit per home and never two homes on one name:
//! - user unit (`~/.config/systemd/user/`, or `$XDG_CONFIG_HOME/systemd/
//!   user/`): `pmdaemond.service` for the default home `~/.pmdaemon`,
//!   `pmdaemond-HASH.service` for any other;
//! - system unit (`/etc/systemd/system/`): `pmdaemond-USER.service` for
//!   USER's default home, `pmdaemond-USER-HASH.service` for another.
//!
//! HASH is the FNV-1a 64-bit hash of the home's absolute path, 16 hex
//! digits (as the daemon names its cgroup directory): stable across
//! builds, and a unit name needs no escaping whatever the path holds.
//!
//! The unit is `Type=notify` (pmdaemond sends `READY=1` once its socket
//! serves, see `pmdaemond::notify`), `NotifyAccess=main` (only the daemon
//! may), `KillMode=mixed` (SIGTERM to the daemon alone, which stops every
//! app with its own stop signal and kill timeout; SIGKILL to whatever is
//! left after `TimeoutStopSec`), `Delegate=yes` (the daemon makes a cgroup
//! per app run in the service's subtree), `Restart=on-failure` (a crash
//! brings it back, `pmd kill` does not).

use std::path::{Path, PathBuf};

use crate::home::Account;

/// The first line of every unit `pmd startup` writes; `pmd unstartup`
/// removes only a file that starts with it.
pub const MARKER: &str = "# Written by `pmd startup`";

/// How long systemd lets the daemon stop its apps before it SIGKILLs what
/// is left. Apps stop together, each within its kill_timeout (PM2's
/// default 1.6 s) plus a balanced app's drain; `depends_on` chains stop
/// one layer after another. Two minutes covers long kill timeouts and a
/// few layers; an app that needs more should get a drop-in
/// (`systemctl edit UNIT`: `[Service]` `TimeoutStopSec=...`).
pub const TIMEOUT_STOP_SECS: u32 = 120;

/// systemd's two managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The user's manager (`systemctl --user`): runs while the user is
    /// logged in, or always with `loginctl enable-linger`.
    User,
    /// The system manager: runs at boot, the daemon as `User=`.
    System,
}

impl Scope {
    /// `--user` for systemctl, or nothing.
    pub fn systemctl_flag(self) -> Option<&'static str> {
        match self {
            Scope::User => Some("--user"),
            Scope::System => None,
        }
    }
}

/// One unit: everything its name, place and text depend on.
#[derive(Debug, Clone)]
pub struct Unit {
    pub scope: Scope,
    /// `pmdaemond.service`, `pmdaemond-alice.service`...
    pub name: String,
    /// The directory it is written to.
    pub dir: PathBuf,
    /// The daemon's home (absolute).
    pub home: PathBuf,
    /// The pmdaemond binary (absolute).
    pub daemon: PathBuf,
    /// The user the daemon runs as (system units only).
    pub account: Option<Account>,
}

impl Unit {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// `systemctl` or `systemctl --user`, for messages.
    pub fn systemctl(&self) -> String {
        match self.scope.systemctl_flag() {
            Some(flag) => format!("systemctl {flag}"),
            None => "systemctl".into(),
        }
    }

    /// The unit file.
    pub fn text(&self) -> Result<String, String> {
        let home = self.home.to_str().ok_or_else(|| {
            format!(
                "the home {} is not UTF-8: a unit file cannot name it",
                self.home.display()
            )
        })?;
        let daemon = self.daemon.to_str().ok_or_else(|| {
            format!(
                "{} is not UTF-8: a unit file cannot name it",
                self.daemon.display()
            )
        })?;
        let (user, wanted_by) = match (&self.account, self.scope) {
            (Some(account), Scope::System) => {
                let group = account
                    .group
                    .clone()
                    .unwrap_or_else(|| account.gid.to_string());
                (
                    format!("User={}\nGroup={group}\n", account.name),
                    "multi-user.target",
                )
            }
            _ => (String::new(), "default.target"),
        };
        Ok(format!(
            "{MARKER} for PMDAEMON_HOME={home_comment}; `pmd unstartup` removes it.
# pmdaemond tells systemd when its socket serves (Type=notify); SIGTERM
# stops every app with its own stop signal and kill timeout, and the apps
# that were online start again with the next daemon.
[Unit]
Description=pmdaemon process manager ({home_text})
After=network.target

[Service]
Type=notify
# Only the daemon may report READY/STOPPING, never an app.
NotifyAccess=main
ExecStart={exec}
Environment={env}
{user}# SIGTERM to the daemon alone: it stops the apps gracefully; SIGKILL for
# whatever is left after TimeoutStopSec (raise it for apps with long kill
# timeouts: `systemctl edit`).
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={TIMEOUT_STOP_SECS}
# Each app run gets its own cgroup below the service's.
Delegate=yes
Restart=on-failure
RestartSec=1

[Install]
WantedBy={wanted_by}
",
            home_comment = one_line(home)?,
            home_text = specifiers(&one_line(home)?),
            exec = exec_word(daemon)?,
            env = quoted_assignment(pmdaemon_proto::HOME_ENV, home)?,
        ))
    }
}

/// `value`, refused when it holds a control character (a newline would end
/// the unit's line).
fn one_line(value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{value:?} holds a control character: a unit file cannot name it"
        ));
    }
    Ok(value.to_string())
}

/// `%` is systemd's specifier sign: `%%` is a literal one.
fn specifiers(value: &str) -> String {
    value.replace('%', "%%")
}

/// A C-escaped double-quoted string as systemd reads it.
fn c_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The program of `ExecStart=`: specifiers and `$` escaped, quoted when it
/// holds a space, a quote or a backslash.
fn exec_word(path: &str) -> Result<String, String> {
    let escaped = specifiers(&one_line(path)?).replace('$', "$$");
    if escaped.contains([' ', '\t', '"', '\'', '\\']) {
        Ok(c_quoted(&escaped))
    } else {
        Ok(escaped)
    }
}

/// `"NAME=value"` for `Environment=`.
fn quoted_assignment(name: &str, value: &str) -> Result<String, String> {
    Ok(c_quoted(&specifiers(&format!(
        "{name}={}",
        one_line(value)?
    ))))
}

/// The unit's name (see the module header). `default_home` is the home
/// the scope's user has without PMDAEMON_HOME.
pub fn unit_name(scope: Scope, home: &Path, default_home: &Path, user: Option<&str>) -> String {
    let mut name = String::from("pmdaemond");
    if let (Scope::System, Some(user)) = (scope, user) {
        name += "-";
        name += user;
    }
    if home != default_home {
        name += "-";
        name += &pmdaemon_proto::home_hash(home);
    }
    name + ".service"
}

/// Where a user's units live: `$XDG_CONFIG_HOME/systemd/user` (when it is
/// absolute), else `~/.config/systemd/user`.
pub fn user_unit_dir(user_home: &Path) -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| user_home.join(".config"));
    config.join("systemd").join("user")
}

/// Where system units written by an administrator live.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(home: &str, daemon: &str) -> Unit {
        Unit {
            scope: Scope::System,
            name: "pmdaemond-alice.service".into(),
            dir: SYSTEM_UNIT_DIR.into(),
            home: home.into(),
            daemon: daemon.into(),
            account: Some(Account {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                group: Some("staff".into()),
                home: "/home/alice".into(),
            }),
        }
    }

    #[test]
    fn names_differ_by_scope_user_and_home() {
        let default = Path::new("/home/a/.pmdaemon");
        assert_eq!(
            unit_name(Scope::User, default, default, Some("a")),
            "pmdaemond.service"
        );
        assert_eq!(
            unit_name(Scope::System, default, default, Some("a")),
            "pmdaemond-a.service"
        );
        let other = unit_name(Scope::User, Path::new("/srv/pm"), default, Some("a"));
        let again = unit_name(Scope::User, Path::new("/srv/pm"), default, Some("a"));
        let third = unit_name(Scope::User, Path::new("/srv/pm2"), default, Some("a"));
        assert_eq!(other, again);
        assert_ne!(other, third);
        assert!(other.starts_with("pmdaemond-") && other.len() == "pmdaemond-.service".len() + 16);
    }

    #[test]
    fn the_text_escapes_what_systemd_would_read_otherwise() {
        let text = unit("/srv/my home/50%", "/opt/pm $x/pmdaemond")
            .text()
            .unwrap();
        assert!(text.starts_with(MARKER), "{text}");
        assert!(
            text.contains("ExecStart=\"/opt/pm $$x/pmdaemond\"\n"),
            "{text}"
        );
        assert!(
            text.contains("Environment=\"PMDAEMON_HOME=/srv/my home/50%%\"\n"),
            "{text}"
        );
        assert!(text.contains("User=alice\nGroup=staff\n"), "{text}");
        assert!(text.contains("WantedBy=multi-user.target\n"), "{text}");
        assert!(text.contains("Type=notify\n"), "{text}");
        let err = unit("/srv/a\nExecStartPre=/bin/evil", "/bin/pmdaemond")
            .text()
            .unwrap_err();
        assert!(err.contains("control character"), "{err}");
    }
}
