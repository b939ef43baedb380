//! `pmd startup` and `pmd unstartup`: the systemd unit that starts
//! pmdaemond at boot (or at login, for a user unit) for this home.
//!
//! Without `--install`, the unit is printed on stdout and where it would
//! go on stderr: nothing is written. `--install`:
//! 1. asks systemd whether it runs (`systemctl [--user] show
//!    --property=Version`; systemctl is found on PATH): when systemctl is
//!    missing or its manager does not answer, it fails and writes nothing;
//! 2. writes the unit (`crate::writefile`: temporary file and rename,
//!    0644, a symbolic link at its path refused); an existing file there
//!    that `pmd startup` did not write is refused too, so a hand-made unit
//!    is never overwritten;
//! 3. `systemctl [--user] daemon-reload` and `enable UNIT` (not `--now`).
//!    When one of them fails, the error says the unit is written and
//!    which command to run again.
//!
//! A daemon already running for the home keeps running: its apps are not
//! stopped behind the operator's back. pmd prints the command that hands
//! it over (`pmd kill && systemctl start UNIT`: the apps that were online
//! start again under the unit's daemon), or says it already runs under
//! the unit (its cgroup is the unit's).
//!
//! `unstartup` asks systemd the same way, then `disable`s, removes the
//! file (only one `pmd startup` wrote) and reloads. A missing unit is a
//! notice and exit 0. The daemon, if it runs, keeps running.
//!
//! Talks to: the file system, systemctl, /proc (the running daemon's
//! cgroup); never to the daemon.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::{RemoteArgs, StartupArgs, UnitArgs, UnstartupArgs};
use crate::home::{self, Account};
use crate::systemd::{self, Scope, Unit};
use crate::term;
use crate::writefile;

/// `pmd startup`.
pub fn startup(args: &StartupArgs, remote: &RemoteArgs) -> anyhow::Result<()> {
    let unit = plan(&args.unit, remote)?;
    let text = unit.text().map_err(anyhow::Error::msg)?;
    if !args.install {
        term::print(&text)?;
        let mut again = scope_flag(&unit).to_string();
        if let Some(user) = &args.unit.service_user {
            again += &format!(" -u {user}");
        }
        if let Some(hp) = &args.unit.home_path {
            again += &format!(" --hp {}", hp.display());
        }
        eprintln!(
            "[pmd] this is {}; `pmd startup{again} --install` writes it there and enables it",
            unit.path().display(),
        );
        return Ok(());
    }
    let root = nix::unistd::geteuid().is_root();
    if unit.scope == Scope::System && !root && args.unit.unit_dir.is_none() {
        let me = unit.account.as_ref().map_or("USER", |a| a.name.as_str());
        let pmd = std::env::current_exe()
            .map(|e| e.display().to_string())
            .unwrap_or_else(|_| "pmd".into());
        bail!(
            "a system unit is written to {} by root: run `sudo PMDAEMON_HOME={} {pmd} startup \
             systemd -u {me} --install`, or install a user unit (`pmd startup --user --install`)",
            systemd::SYSTEM_UNIT_DIR,
            unit.home.display(),
        );
    }
    let path = unit.path();
    if writefile::existing_file(&path)?.is_some() {
        let current = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !current.starts_with(systemd::MARKER) {
            bail!(
                "{} exists and was not written by `pmd startup`: move it away (compare it with \
                 `pmd startup{}`) and run this again",
                path.display(),
                scope_flag(&unit)
            );
        }
    }
    systemd_answers(&unit)?;
    std::fs::create_dir_all(&unit.dir)
        .with_context(|| format!("cannot create {}", unit.dir.display()))?;
    writefile::replace(&path, text.as_bytes(), 0o644)?;
    eprintln!("[pmd] wrote {}", path.display());
    let written = |e: anyhow::Error| {
        e.context(format!(
            "{} is written but not enabled: run `{} daemon-reload && {} enable {}`",
            path.display(),
            unit.systemctl(),
            unit.systemctl(),
            unit.name
        ))
    };
    systemctl(&unit, &["daemon-reload"]).map_err(written)?;
    systemctl(&unit, &["enable", &unit.name]).map_err(written)?;
    eprintln!("[pmd] enabled {}", unit.name);
    handover_advice(&unit);
    if unit.scope == Scope::User {
        linger_advice();
    }
    Ok(())
}

/// `pmd unstartup`.
pub fn unstartup(args: &UnstartupArgs, remote: &RemoteArgs) -> anyhow::Result<()> {
    let unit = plan(&args.unit, remote)?;
    let path = unit.path();
    match writefile::existing_file(&path) {
        Ok(None) => {
            eprintln!(
                "[pmd] no unit at {}: nothing to remove (`pmd startup{} --install` writes it)",
                path.display(),
                scope_flag(&unit)
            );
            return Ok(());
        }
        Ok(Some(_)) => {}
        Err(writefile::WriteError::Linked { path, target }) => bail!(
            "{} is a symbolic link (to {target}), not the file `pmd startup` writes: remove it \
             yourself if it should go",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    }
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !current.starts_with(systemd::MARKER) {
        bail!(
            "{} was not written by `pmd startup`: pmd leaves it alone",
            path.display()
        );
    }
    systemd_answers(&unit)?;
    systemctl(&unit, &["disable", &unit.name])?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    if let Ok(dir) = std::fs::File::open(&unit.dir) {
        let _ = dir.sync_all();
    }
    systemctl(&unit, &["daemon-reload"])?;
    eprintln!(
        "[pmd] disabled {} and removed {}; a daemon running for {} keeps running (`pmd kill` \
         stops it)",
        unit.name,
        path.display(),
        unit.home.display()
    );
    Ok(())
}

/// The unit the flags and the environment describe.
fn plan(args: &UnitArgs, remote: &RemoteArgs) -> anyhow::Result<Unit> {
    let given = remote.given();
    if !given.is_empty() {
        return Err(UsageError(format!(
            "{} do not apply here: the unit starts this machine's daemon; run pmd on the \
             daemon's host",
            given.join(", ")
        ))
        .into());
    }
    let root = nix::unistd::geteuid().is_root();
    let scope = if args.user {
        Scope::User
    } else if args.system || args.service_user.is_some() || root {
        Scope::System
    } else {
        Scope::User
    };
    let daemon = crate::connect::daemon_binary()?;
    let daemon = std::path::absolute(&daemon)
        .with_context(|| format!("cannot make {} absolute", daemon.display()))?;
    let explicit_home = std::env::var_os(pmdaemon_proto::HOME_ENV).filter(|h| !h.is_empty());
    let absolute = |p: PathBuf| {
        std::path::absolute(&p).with_context(|| format!("cannot make {} absolute", p.display()))
    };
    let (account, user_home) = match &args.service_user {
        Some(name) => {
            let account = home::account_named(name).ok_or_else(|| {
                UsageError(format!("-u {name}: /etc/passwd has no user {name:?}"))
            })?;
            let user_home = args.home_path.clone().unwrap_or(account.home.clone());
            (Some(account), user_home)
        }
        None => {
            let uid = nix::unistd::geteuid().as_raw();
            let account = home::account_of_uid(uid);
            let user_home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
                .or_else(|| account.as_ref().map(|a| a.home.clone()))
                .context("HOME is not set and /etc/passwd has no home for this user")?;
            (account, user_home)
        }
    };
    let default_home = user_home.join(".pmdaemon");
    let home = match explicit_home {
        Some(home) => absolute(PathBuf::from(home))?,
        None => default_home.clone(),
    };
    if scope == Scope::System && account.is_none() {
        bail!(
            "/etc/passwd has no user for uid {}: a system unit needs User=",
            nix::unistd::geteuid()
        );
    }
    let name = systemd::unit_name(
        scope,
        &home,
        &default_home,
        account.as_ref().map(|a| a.name.as_str()),
    );
    let dir = match (&args.unit_dir, scope) {
        (Some(dir), _) => absolute(dir.clone())?,
        (None, Scope::User) => systemd::user_unit_dir(&user_home),
        (None, Scope::System) => PathBuf::from(systemd::SYSTEM_UNIT_DIR),
    };
    Ok(Unit {
        scope,
        name,
        dir,
        home,
        daemon,
        account: match scope {
            Scope::System => account,
            Scope::User => None,
        },
    })
}

/// ` --user` or ` --system`, as the user would repeat it.
fn scope_flag(unit: &Unit) -> &'static str {
    match unit.scope {
        Scope::User => " --user",
        Scope::System => " --system",
    }
}

/// Runs `systemctl [--user] ARGS`; its own message when it fails.
fn systemctl(unit: &Unit, args: &[&str]) -> anyhow::Result<()> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(flag) = unit.scope.systemctl_flag() {
        argv.push(flag.into());
    }
    argv.extend(args.iter().map(OsString::from));
    let shown = format!("{} {}", unit.systemctl(), args.join(" "));
    let out = Command::new("systemctl")
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "systemctl is not on PATH: this machine does not run systemd (run pmdaemond \
                     from your own init, or `pmd startup` prints the unit to install by hand)"
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot run `{shown}`"))
            }
        })?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        bail!("`{shown}` failed ({}): {said}", out.status);
    }
    Ok(())
}

/// Fails, before anything is written, when systemd's manager of the scope
/// does not answer.
fn systemd_answers(unit: &Unit) -> anyhow::Result<()> {
    systemctl(unit, &["show", "--property=Version"]).map_err(|e| {
        let hint = match unit.scope {
            Scope::User => {
                "the user's systemd manager must run (a login session, or `loginctl \
                 enable-linger USER`)"
            }
            Scope::System => "PID 1 must be systemd (in a container it often is not)",
        };
        e.context(format!(
            "systemd does not answer, so nothing was written: {hint}"
        ))
    })
}

/// What to do about a daemon already running for the home.
fn handover_advice(unit: &Unit) {
    let socket = pmdaemon_proto::socket_path(&unit.home);
    let running = std::os::unix::net::UnixStream::connect(&socket).is_ok();
    let start = format!("{} start {}", unit.systemctl(), unit.name);
    if !running {
        eprintln!("[pmd] it starts at the next boot; to start it now: {start}");
        return;
    }
    if daemon_cgroup(&unit.home).is_some_and(|cgroup| cgroup.contains(&format!("/{}", unit.name))) {
        eprintln!(
            "[pmd] the daemon of {} already runs under {}",
            unit.home.display(),
            unit.name
        );
        return;
    }
    let as_user = match (&unit.account, unit.scope) {
        (Some(a), Scope::System) if !is_current_user(a) => {
            format!("sudo -u {} PMDAEMON_HOME={} ", a.name, unit.home.display())
        }
        _ => String::new(),
    };
    eprintln!(
        "[pmd] a daemon already runs for {} outside systemd and was left alone; hand it over \
         with\n    {as_user}pmd kill && {start}\n  (its apps stop; those that were online start \
         again under the unit's daemon)",
        unit.home.display()
    );
}

fn is_current_user(account: &Account) -> bool {
    nix::unistd::geteuid().as_raw() == account.uid
}

/// The cgroup of the daemon holding the home's lock (its pid is in
/// pmdaemond.lock), from /proc.
fn daemon_cgroup(home: &Path) -> Option<String> {
    let pid = std::fs::read_to_string(home.join("pmdaemond.lock")).ok()?;
    let pid: u32 = pid.trim().parse().ok()?;
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// A user unit runs only while its user has a manager: say so unless the
/// user lingers.
fn linger_advice() {
    let Some(account) = home::account_of_uid(nix::unistd::geteuid().as_raw()) else {
        return;
    };
    if Path::new("/var/lib/systemd/linger")
        .join(&account.name)
        .exists()
    {
        return;
    }
    eprintln!(
        "[pmd] a user unit starts when {0} logs in and stops at logout; to start it at boot: \
         loginctl enable-linger {0}",
        account.name
    );
}
