//! The flags of the verbs that need no daemon and set up this machine:
//! `pmd startup` / `pmd unstartup` (the systemd unit that starts pmdaemond
//! at boot), `pmd completions SHELL` and `pmd man`. Clap types only; the
//! logic is in `crate::systemd`, `crate::commands::startup` and
//! `crate::commands::shell`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `pmd startup [systemd] ...`.
#[derive(Debug, Clone, Args)]
pub struct StartupArgs {
    #[command(flatten)]
    pub unit: UnitArgs,

    /// Write the unit (temporary file and rename, mode 0644; a symbolic
    /// link at its path is refused), `systemctl daemon-reload` and
    /// `systemctl enable` it. A daemon already running for the home is left
    /// alone: pmd prints the command that hands it over to systemd.
    #[arg(long)]
    pub install: bool,
}

/// `pmd unstartup [systemd] ...`.
#[derive(Debug, Clone, Args)]
pub struct UnstartupArgs {
    #[command(flatten)]
    pub unit: UnitArgs,
}

/// Which unit: the platform, its scope, whose home, where it lives.
#[derive(Debug, Clone, Args)]
pub struct UnitArgs {
    /// The init system: systemd, the only one pmd supports (PM2's
    /// `pm2 startup systemd`; PM2's ubuntu, centos, arch and oracle mean
    /// systemd too).
    #[arg(value_name = "PLATFORM", default_value = "systemd", value_parser = parse_platform)]
    pub platform: Platform,

    /// A user unit (~/.config/systemd/user, `systemctl --user`): the
    /// default when not root.
    #[arg(long, conflicts_with = "system")]
    pub user: bool,

    /// A system unit (/etc/systemd/system, with User= and Group=): the
    /// default as root.
    #[arg(long)]
    pub system: bool,

    /// The user whose home the system unit serves and who runs the daemon
    /// (PM2's `-u`); default: the user running pmd. Implies --system.
    #[arg(short = 'u', long = "service-user", value_name = "USER", conflicts_with = "user",
          value_parser = parse_user_name)]
    pub service_user: Option<String>,

    /// That user's home directory (PM2's `--hp`): the daemon's home is
    /// DIR/.pmdaemon unless PMDAEMON_HOME is set. Default: the user's home
    /// in /etc/passwd.
    #[arg(long = "hp", value_name = "DIR", requires = "service_user", value_parser = parse_absolute_dir)]
    pub home_path: Option<PathBuf>,

    /// Write the unit into DIR instead of the systemd directory of its
    /// scope (for packagers and tests); systemctl is still called.
    #[arg(long, value_name = "DIR", value_parser = parse_dir)]
    pub unit_dir: Option<PathBuf>,
}

/// The init systems `pmd startup` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Systemd,
}

/// PM2's platforms that are systemd under another name.
const SYSTEMD_ALIASES: &[&str] = &["systemd", "ubuntu", "centos", "arch", "oracle"];
/// PM2's other platforms: named in the refusal.
const NOT_SUPPORTED: &[&str] = &[
    "upstart",
    "launchd",
    "darwin",
    "macos",
    "openrc",
    "gentoo",
    "rcd",
    "rcd-openbsd",
    "freebsd",
    "openbsd",
    "systemv",
    "redhat",
    "amazon",
    "smf",
];

fn parse_platform(value: &str) -> Result<Platform, String> {
    if SYSTEMD_ALIASES.contains(&value) {
        return Ok(Platform::Systemd);
    }
    if NOT_SUPPORTED.contains(&value) {
        return Err(format!(
            "{value} is not supported; systemd only (pmdaemon runs on Linux; PM2's upstart, \
             launchd, openrc, rcd and systemv are not supported)"
        ));
    }
    Err(format!(
        "unknown init system {value:?}: systemd is the only one supported"
    ))
}

/// A user name as /etc/passwd holds it (what `User=` takes).
fn parse_user_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a user name (letters, digits, '_', '-', '.')"
        ))
    }
}

fn parse_dir(value: &str) -> Result<PathBuf, String> {
    if value.trim().is_empty() || value.contains('\0') {
        return Err("give a directory path".into());
    }
    Ok(PathBuf::from(value))
}

fn parse_absolute_dir(value: &str) -> Result<PathBuf, String> {
    let dir = parse_dir(value)?;
    if !dir.is_absolute() {
        return Err(format!("{value:?} is not an absolute path"));
    }
    Ok(dir)
}

/// `pmd completions SHELL`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script of.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells clap_complete writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// `pmd man [--dir DIR]`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write pmd.1 and one page per subcommand (pmd-start.1, ...) into DIR
    /// (created if missing) instead of printing pmd(1).
    #[arg(long, value_name = "DIR", value_parser = parse_dir)]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_pm2_names_and_refusals() {
        for name in ["systemd", "ubuntu", "centos"] {
            assert_eq!(parse_platform(name).unwrap(), Platform::Systemd);
        }
        for name in ["upstart", "launchd", "openrc", "rcd", "systemv"] {
            let err = parse_platform(name).unwrap_err();
            assert!(err.contains("not supported; systemd only"), "{err}");
        }
        assert!(parse_platform("runit").unwrap_err().contains("unknown"));
    }

    #[test]
    fn user_names_are_checked() {
        assert!(parse_user_name("alice").is_ok());
        assert!(parse_user_name("svc-web.1").is_ok());
        for bad in ["", "-rf", "a b", "a\nb", "a:b"] {
            assert!(parse_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
