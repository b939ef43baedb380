//! Named contexts: remote daemons saved under a name (`pmd context add`)
//! and the current one (`pmd context use`), in
//! `$XDG_CONFIG_HOME/pmdaemon/contexts.yaml` (default
//! `~/.config/pmdaemon/contexts.yaml`).
//!
//! The file holds addresses and absolute file paths, never a token: a
//! context names the file its token is in. It is still written as if it
//! were secret (it maps where the tokens are): the directory is made 0700,
//! the file is written to a temporary file created with O_CREAT|O_EXCL
//! and O_NOFOLLOW at mode 0600, synced, then renamed over the old one, so
//! nobody sees a half-written file or a wider mode, and no symbolic link
//! is followed where it writes. A malformed file is an error with
//! FILE:LINE:COLUMN; every value is checked as it is read (names, the
//! address, absolute paths, `current` naming a context).
//!
//! `local` is reserved: it means the Unix socket of `$PMDAEMON_HOME` (no
//! `current` in the file).
//!
//! Talks to: the file system only.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::remote::url::HostUrl;

/// The reserved context name for the local socket.
pub const LOCAL: &str = "local";

/// What can go wrong with the contexts file.
#[derive(Debug, thiserror::Error)]
pub enum ContextsError {
    #[error(
        "cannot find your configuration directory: set HOME, or XDG_CONFIG_HOME to an absolute path"
    )]
    NoConfigDir,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}{at}: {message}")]
    Malformed {
        path: PathBuf,
        /// `:LINE:COLUMN`, when the parser knows it.
        at: String,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is a symbolic link: contexts are written only into a real directory (make it one, or set XDG_CONFIG_HOME)"
    )]
    LinkedDir(PathBuf),
}

/// A context name: the app-name rules, and not `local`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContextName(String);

impl ContextName {
    /// `local` is refused here: it is not a stored context.
    pub fn new(name: &str) -> Result<ContextName, String> {
        if name == LOCAL {
            return Err(format!(
                "{LOCAL:?} is reserved for this machine's daemon (the Unix socket): pick another name"
            ));
        }
        pmdaemon_proto::validate_plain_name(name)
            .map_err(|e| e.to_string().replace("name", "context name"))?;
        Ok(ContextName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContextName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        ContextName::new(&name)
    }
}

impl From<ContextName> for String {
    fn from(name: ContextName) -> String {
        name.0
    }
}

impl fmt::Display for ContextName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path that must be absolute (the file may be read from any directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct AbsPath(PathBuf);

impl AbsPath {
    pub fn new(path: PathBuf) -> Result<AbsPath, String> {
        if path.is_absolute() {
            Ok(AbsPath(path))
        } else {
            Err(format!(
                "{} is relative: paths in contexts are absolute",
                path.display()
            ))
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for AbsPath {
    type Error = String;
    fn try_from(path: PathBuf) -> Result<Self, String> {
        AbsPath::new(path)
    }
}

impl From<AbsPath> for PathBuf {
    fn from(path: AbsPath) -> PathBuf {
        path.0
    }
}

/// One remote daemon: its address and the files to use with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub host: HostUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<AbsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<AbsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<AbsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<AbsPath>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    /// The context used when none is named; absent: `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<ContextName>,
    #[serde(default)]
    pub contexts: BTreeMap<ContextName, Context>,
}

const HEADER: &str =
    "# pmd contexts (`pmd context add|use|remove`): addresses and file paths, never a token.\n";

impl Contexts {
    /// `$XDG_CONFIG_HOME/pmdaemon/contexts.yaml`, else
    /// `$HOME/.config/pmdaemon/contexts.yaml`. A relative XDG_CONFIG_HOME
    /// is ignored, as the XDG specification says.
    pub fn default_path() -> Result<PathBuf, ContextsError> {
        let from = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let config = from("XDG_CONFIG_HOME")
            .or_else(|| from("HOME").map(|home| home.join(".config")))
            .ok_or(ContextsError::NoConfigDir)?;
        Ok(config.join("pmdaemon").join("contexts.yaml"))
    }

    /// The file at `path`; empty when it does not exist.
    pub fn load(path: &Path) -> Result<Contexts, ContextsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contexts::default()),
            Err(source) => {
                return Err(ContextsError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Contexts::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Contexts, ContextsError> {
        let malformed = |at: String, message: String| ContextsError::Malformed {
            path: path.to_path_buf(),
            at,
            message,
        };
        // An empty file (or only comments) is no contexts.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Contexts::default());
        }
        let contexts: Contexts = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_string(),
                None => message,
            };
            malformed(at, message)
        })?;
        if let Some(current) = &contexts.current
            && !contexts.contexts.contains_key(current)
        {
            return Err(malformed(
                String::new(),
                format!(
                    "current: no context named {current} (choose one with `pmd context use NAME`)"
                ),
            ));
        }
        for (name, context) in &contexts.contexts {
            if context.client_cert.is_some() != context.client_key.is_some() {
                return Err(malformed(
                    String::new(),
                    format!("context {name}: client_cert and client_key go together"),
                ));
            }
        }
        Ok(contexts)
    }

    /// The context `name`, or an error that lists the known ones.
    pub fn get(&self, name: &str, path: &Path) -> Result<&Context, String> {
        let found = self.contexts.iter().find(|(n, _)| n.as_str() == name);
        match found {
            Some((_, context)) => Ok(context),
            None if self.contexts.is_empty() => Err(format!(
                "no context named {name:?}: {} has none (add one with `pmd context add NAME --host URL`)",
                path.display()
            )),
            None => Err(format!(
                "no context named {name:?}; known: {}, {LOCAL}",
                self.names().join(", ")
            )),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.contexts.keys().map(ContextName::as_str).collect()
    }

    /// Writes the file atomically (see the module header).
    pub fn save(&self, path: &Path) -> Result<(), ContextsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let write_err = |source| ContextsError::Write {
            path: path.to_path_buf(),
            source,
        };
        make_private_dir(dir).map_err(|e| match e {
            DirError::Linked => ContextsError::LinkedDir(dir.to_path_buf()),
            DirError::Io(source) => ContextsError::Write {
                path: dir.to_path_buf(),
                source,
            },
        })?;
        let text = format!(
            "{HEADER}{}",
            serde_yaml::to_string(self).map_err(|e| write_err(std::io::Error::other(e)))?
        );
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "contexts.yaml".into());
        let temp = dir.join(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let written = write_new(&temp, text.as_bytes()).and_then(|()| {
            std::fs::rename(&temp, path)?;
            // The rename is durable once the directory is.
            std::fs::File::open(dir)?.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(write_err(e));
        }
        Ok(())
    }
}

/// Creates `path` with mode 0600, failing if anything (a file, a link) is
/// there already, and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

enum DirError {
    Linked,
    Io(std::io::Error),
}

/// `dir` exists as a real directory of mode 0700 (created so, or narrowed).
fn make_private_dir(dir: &Path) -> Result<(), DirError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(DirError::Io)?;
    let meta = std::fs::symlink_metadata(dir).map_err(DirError::Io)?;
    if meta.file_type().is_symlink() {
        return Err(DirError::Linked);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(DirError::Io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn abs(p: &str) -> Option<AbsPath> {
        Some(AbsPath::new(PathBuf::from(p)).unwrap())
    }

    fn sample() -> Contexts {
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            ContextName::new("prod").unwrap(),
            Context {
                host: HostUrl::parse("https://pm.example.com:7070").unwrap(),
                token_file: abs("/home/me/.pmd/prod.token"),
                ca_cert: abs("/home/me/.pmd/ca.pem"),
                client_cert: None,
                client_key: None,
            },
        );
        contexts.current = Some(ContextName::new("prod").unwrap());
        contexts
    }

    #[test]
    fn saved_files_read_back_private_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/pmdaemon/contexts.yaml");
        assert_eq!(Contexts::load(&path).unwrap(), Contexts::default());
        let contexts = sample();
        contexts.save(&path).unwrap();
        assert_eq!(Contexts::load(&path).unwrap(), contexts);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# pmd contexts"), "{text}");
        assert!(text.contains("host: https://pm.example.com:7070"), "{text}");
        // Saving again replaces it; no temporary file is left.
        let mut changed = contexts.clone();
        changed.current = None;
        changed.save(&path).unwrap();
        assert_eq!(Contexts::load(&path).unwrap(), changed);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["contexts.yaml"]);
        // A wider directory is narrowed.
        std::fs::set_permissions(
            path.parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        changed.save(&path).unwrap();
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn a_linked_directory_is_not_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("pmdaemon")).unwrap();
        let err = sample()
            .save(&dir.path().join("pmdaemon/contexts.yaml"))
            .unwrap_err();
        assert!(matches!(err, ContextsError::LinkedDir(_)), "{err}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let path = Path::new("/cfg/contexts.yaml");
        let err = |text: &str| Contexts::parse(path, text).unwrap_err().to_string();
        let e = err("contexts:\n  prod:\n    host: https://h\n");
        assert!(e.starts_with("/cfg/contexts.yaml:3:"), "{e}");
        assert!(e.contains("has no port"), "{e}");
        let e = err("contexts:\n  prod:\n    host: h:1\n    token: abc\n");
        assert!(e.starts_with("/cfg/contexts.yaml:4:"), "{e}");
        assert!(e.contains("unknown field `token`"), "{e}");
        // A value refused after parsing points at its context.
        let e = err("contexts:\n  prod:\n    host: h:1\n    token_file: rel/t\n");
        assert!(e.starts_with("/cfg/contexts.yaml:3:"), "{e}");
        assert!(e.contains("rel/t is relative"), "{e}");
        let e = err("contexts:\n  local:\n    host: h:1\n");
        assert!(e.contains("reserved"), "{e}");
        let e = err("contexts:\n  'bad name':\n    host: h:1\n");
        assert!(e.contains("invalid context name"), "{e}");
        let e = err("current: nope\n");
        assert!(e.contains("current: no context named nope"), "{e}");
        let e = err("contexts:\n  a:\n    host: h:1\n    client_cert: /c.pem\n");
        assert!(e.contains("go together"), "{e}");
        let e = err("[1, 2]\n");
        assert!(e.starts_with("/cfg/contexts.yaml:1:"), "{e}");
        assert_eq!(
            Contexts::parse(path, "# nothing\n\n").unwrap(),
            Contexts::default()
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let path = Path::new("/cfg/contexts.yaml");
        let e = Contexts::default().get("prod", path).unwrap_err();
        assert!(e.contains("/cfg/contexts.yaml has none"), "{e}");
        let e = sample().get("staging", path).unwrap_err();
        assert!(e.contains("known: prod, local"), "{e}");
        assert!(sample().get("prod", path).is_ok());
    }
}
