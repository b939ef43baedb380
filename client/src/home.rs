//! `~` in an app's paths, as PM2 users write them (`out_file:
//! "~/logs/api.log"`, `cwd: "~/app"`): the CLI expands it before anything
//! is sent, to the home of the user pmd runs as (`$HOME`, else its line
//! of /etc/passwd), or `~user` to that user's home in /etc/passwd. pmd is
//! linked statically, so the C library's password lookups (NSS modules)
//! are not used; a user known only to LDAP and the like has no `~user`.
//! The daemon never expands `~`: whose home it would be is the caller's
//! question.
//!
//! A remote daemon's files are on its host, whose homes this machine does
//! not know: there a path with `~` is refused, with the fix (an absolute
//! path on that host), rather than turned into this machine's home.
//!
//! Also here: PM2's `NULL` for a log file, which is `/dev/null`; and the
//! accounts of /etc/passwd (`pmd startup`'s `User=`, `Group=`).
//!
//! Reads the environment and /etc/passwd; talks to nothing else.

use std::borrow::Cow;
use std::path::PathBuf;

use pmdaemon_proto::v1::AppSpec;

/// PM2's name for "discard this stream", and the file pmd writes for it.
const PM2_DISCARD: &str = "NULL";
const DISCARD: &str = "/dev/null";

/// A user as /etc/passwd has it (`name:x:uid:gid:gecos:home:shell`), and
/// the name of its primary group from /etc/group when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub group: Option<String>,
    pub home: PathBuf,
}

/// The first user of /etc/passwd that `matches` (name, uid as written).
fn passwd_entry(matches: impl Fn(&str, &str) -> bool) -> Option<Account> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    let mut account = text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || !matches(fields[0], fields[2]) {
            return None;
        }
        Some(Account {
            name: fields[0].to_string(),
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            group: None,
            home: PathBuf::from(fields[5]),
        })
    })?;
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let gid = account.gid.to_string();
    account.group = groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2] == gid).then(|| fields[0].to_string())
    });
    Some(account)
}

/// The user named `name` in /etc/passwd.
pub fn account_named(name: &str) -> Option<Account> {
    passwd_entry(|n, _| n == name)
}

/// The user of `uid` in /etc/passwd.
pub fn account_of_uid(uid: u32) -> Option<Account> {
    let uid = uid.to_string();
    passwd_entry(|_, id| id == uid)
}

/// The home directory /etc/passwd gives the first user `matches`.
fn passwd_home(matches: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    passwd_entry(matches).map(|a| a.home)
}

/// The home of the user pmd runs as.
fn own_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let uid = nix::unistd::getuid().as_raw().to_string();
    passwd_home(|_, id| id == uid)
        .ok_or_else(|| "HOME is not set and /etc/passwd has no home for this user".into())
}

/// `value` with a leading `~` or `~user` replaced by that home; other
/// values as they are.
pub fn expand(value: &str) -> Result<Cow<'_, str>, String> {
    let Some(rest) = value.strip_prefix('~') else {
        return Ok(Cow::Borrowed(value));
    };
    let (user, tail) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        own_home()?
    } else {
        passwd_home(|name, _| name == user).ok_or_else(|| {
            format!("{value:?}: /etc/passwd has no user {user:?} whose home ~{user} would be")
        })?
    };
    let home = home
        .to_str()
        .ok_or_else(|| format!("{value:?}: the home {} is not UTF-8", home.display()))?
        .to_string();
    Ok(Cow::Owned(home + tail))
}

/// Expands `~` in the paths of `spec` (script, cwd, log files, watch
/// paths) and writes PM2's `NULL` log file as `/dev/null`. `label` heads
/// each refusal (`app api`, `--out-file`...); for a remote daemon a `~`
/// is refused.
pub fn resolve_paths(spec: &mut AppSpec, remote: bool, label: &str) -> Result<(), String> {
    for file in [&mut spec.out_file, &mut spec.error_file] {
        if file == PM2_DISCARD {
            *file = DISCARD.into();
        }
    }
    if spec.log_file.as_deref() == Some(PM2_DISCARD) {
        spec.log_file = Some(DISCARD.into());
    }
    let mut fields: Vec<(&str, &mut String)> = vec![
        ("script", &mut spec.script),
        ("cwd", &mut spec.cwd),
        ("out_file", &mut spec.out_file),
        ("error_file", &mut spec.error_file),
    ];
    if let Some(log) = spec.log_file.as_mut() {
        fields.push(("log_file", log));
    }
    for path in spec.watch_paths.iter_mut() {
        fields.push(("watch", path));
    }
    for (field, value) in fields {
        if !value.starts_with('~') {
            continue;
        }
        if remote {
            return Err(format!(
                "{label}: {field} {value:?}: ~ is a home on this machine, and a remote daemon's \
                 files are on its host: give an absolute path on that host"
            ));
        }
        let expanded = expand(value).map_err(|e| format!("{label}: {field} {e}"))?;
        *value = expanded.into_owned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_is_the_home_and_other_paths_stay() {
        let home = own_home().unwrap();
        let home = home.to_str().unwrap();
        assert_eq!(expand("~").unwrap(), home);
        assert_eq!(
            expand("~/logs/a.log").unwrap(),
            format!("{home}/logs/a.log")
        );
        assert_eq!(expand("logs/~a").unwrap(), "logs/~a");
        assert_eq!(expand("/abs").unwrap(), "/abs");
        let root = passwd_home(|name, _| name == "root").unwrap();
        assert_eq!(expand("~root/x").unwrap(), format!("{}/x", root.display()));
        assert!(
            expand("~no-such-user-pmd/x")
                .unwrap_err()
                .contains("no user")
        );
    }

    #[test]
    fn a_spec_is_resolved_and_a_remote_tilde_refused() {
        let mut spec = AppSpec {
            script: "~/app.js".into(),
            out_file: "NULL".into(),
            error_file: "~/err.log".into(),
            log_file: Some("NULL".into()),
            ..Default::default()
        };
        let mut remote = spec.clone();
        resolve_paths(&mut spec, false, "app api").unwrap();
        let home = own_home().unwrap().display().to_string();
        assert_eq!(spec.script, format!("{home}/app.js"));
        assert_eq!(spec.out_file, "/dev/null");
        assert_eq!(spec.error_file, format!("{home}/err.log"));
        assert_eq!(spec.log_file.as_deref(), Some("/dev/null"));
        let err = resolve_paths(&mut remote, true, "app api").unwrap_err();
        assert!(err.contains("app api: script \"~/app.js\""), "{err}");
        assert!(err.contains("absolute path on that host"), "{err}");
    }
}
