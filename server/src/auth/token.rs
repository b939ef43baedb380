//! Bearer tokens of the TCP listener: the admin token in
//! `$PMDAEMON_HOME/token` and the named ones in `tokens.json`, with their
//! scope, expiry and last use; checking a presented secret
//! ([`TokenStore::verify`]); creating, listing and revoking named tokens
//! (the local-only token RPCs of `api/`).
//!
//! Secrets are never kept: only their SHA-256. A presented secret is hashed
//! and compared with every stored hash in constant time (`subtle`), so
//! neither the comparison nor which entry matched shows in the timing.
//! The admin token's file holds the secret itself (the user reads it from
//! there); the daemon hashes it at start and compares like any other token,
//! rather than keeping its hash in tokens.json too: one source of truth, and
//! deleting the file (then restarting) is how the admin token is rotated.
//!
//! Files: both mode 0600, reached through a handle of the home directory and
//! never through a symbolic link (`O_NOFOLLOW`); `token` is created with
//! `O_EXCL` and never rewritten; tokens.json is replaced atomically (a new
//! file created with `O_EXCL` and mode 0600, then renamed). Last use is
//! updated in memory on each request and written lazily
//! ([`TokenStore::spawn_persister`], and at shutdown), never once per request.
//!
//! Talks to: the home directory; `auth::layer` (verify), `api` (the token
//! RPCs), `run()` (load, persister, flush).

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sync::LockExt;

/// The admin token's file, in the home.
pub const ADMIN_FILE: &str = "token";
/// The named tokens, hashed, in the home.
pub const TOKENS_FILE: &str = "tokens.json";
/// The admin token's name in listings (reserved for named tokens).
pub const ADMIN_NAME: &str = "admin";
/// Every secret starts with it (secret scanners, and a visible mistake when
/// a token is pasted where it does not belong).
const PREFIX: &str = "pmd_";
/// 256 bits, as hex.
const SECRET_HEX_LEN: usize = 64;
/// How often changed last-use times reach tokens.json.
const PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// What a token may do over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every RPC that is not local-only.
    Admin,
    /// Only the RPCs marked `ACCESS_READ_ONLY`.
    ReadOnly,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::ReadOnly => "read-only",
        }
    }
}

/// A token's public facts (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub scope: Scope,
    pub created_at_ms: i64,
    /// 0: never expires.
    pub expires_at_ms: i64,
    /// 0: never used.
    pub last_used_at_ms: i64,
}

/// A fresh secret, handed out once.
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why tokens could not be loaded, created or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pmdaemon token (expected {PREFIX} and {SECRET_HEX_LEN} hex digits on one line); delete it to have a new admin token made at the next start"
    )]
    MalformedAdmin { path: PathBuf },
    #[error("{path}: {message}; fix or delete the file (deleting it revokes every named token)")]
    MalformedList { path: PathBuf, message: String },
    #[error("cannot read randomness from the OS: {0}")]
    Random(String),
    #[error("token name: {0}")]
    InvalidName(String),
    #[error("a token named {0:?} already exists")]
    AlreadyExists(String),
    #[error("no token named {0:?}")]
    NotFound(String),
}

/// tokens.json on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    version: u32,
    tokens: Vec<StoredToken>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    /// Hex SHA-256 of the secret.
    sha256: String,
    scope: Scope,
    created_at_ms: i64,
    #[serde(default)]
    expires_at_ms: i64,
    #[serde(default)]
    last_used_at_ms: i64,
}

struct Entry {
    info: TokenInfo,
    hash: [u8; 32],
}

// The hash is a secret's stand-in: never printed.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("info", &self.info).finish()
    }
}

struct Tokens {
    admin: Entry,
    named: Vec<Entry>,
    /// Last-use times changed since tokens.json was written.
    dirty: bool,
}

/// The daemon's tokens (cheap to clone).
#[derive(Clone)]
pub struct TokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    home: OwnedFd,
    home_path: PathBuf,
    tokens: Mutex<Tokens>,
    /// One writer of tokens.json at a time (RPCs and the persister).
    write: Mutex<()>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("home", &self.inner.home_path)
            .finish_non_exhaustive()
    }
}

fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn new_secret() -> Result<Secret, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(Secret(format!("{PREFIX}{}", hex(&bytes))))
}

fn well_formed(secret: &str) -> bool {
    secret.len() == PREFIX.len() + SECRET_HEX_LEN
        && secret.starts_with(PREFIX)
        && secret[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

fn now_ms() -> i64 {
    crate::supervisor::instance::now_ms()
}

impl TokenStore {
    /// Loads the tokens of `home`, creating the admin token at the first
    /// start (and an empty tokens.json). A malformed file is an error: the
    /// daemon does not start on tokens it cannot read.
    pub fn load(home: &Path) -> Result<TokenStore, TokenError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: nix::Error| TokenError::Io {
                path,
                source: std::io::Error::from(e),
            }
        };
        let dir: OwnedFd = nix::fcntl::open(
            home,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io(home))?;
        let admin_path = home.join(ADMIN_FILE);
        let admin = match read_at(&dir, ADMIN_FILE).map_err(|source| TokenError::Io {
            path: admin_path.clone(),
            source,
        })? {
            Some((text, created_at_ms)) => {
                let secret = text.strip_suffix('\n').unwrap_or(&text);
                if !well_formed(secret) {
                    return Err(TokenError::MalformedAdmin { path: admin_path });
                }
                admin_entry(hash(secret.as_bytes()), created_at_ms)
            }
            None => {
                let secret = new_secret()?;
                write_new_at(&dir, ADMIN_FILE, format!("{}\n", secret.0).as_bytes()).map_err(
                    |source| TokenError::Io {
                        path: admin_path.clone(),
                        source,
                    },
                )?;
                tracing::info!(path = %admin_path.display(), "created the admin token");
                admin_entry(hash(secret.0.as_bytes()), now_ms())
            }
        };
        let list_path = home.join(TOKENS_FILE);
        let (named, missing) =
            match read_at(&dir, TOKENS_FILE).map_err(|source| TokenError::Io {
                path: list_path.clone(),
                source,
            })? {
                Some((text, _)) => (parse_list(&list_path, &text)?, false),
                None => (Vec::new(), true),
            };
        let store = TokenStore {
            inner: Arc::new(Inner {
                home: dir,
                home_path: home.to_path_buf(),
                tokens: Mutex::new(Tokens {
                    admin,
                    named,
                    dirty: false,
                }),
                write: Mutex::new(()),
            }),
        };
        if missing {
            store.persist()?;
        }
        Ok(store)
    }

    /// The scope of the token whose secret is `presented`; None for an
    /// unknown, revoked, expired or malformed one. Records the use.
    pub fn verify(&self, presented: &[u8]) -> Option<Scope> {
        let presented = hash(presented);
        let now = now_ms();
        let mut tokens = self.inner.tokens.locked();
        let tokens = &mut *tokens;
        // Every entry is compared, whatever matched before: the time taken
        // depends on the number of tokens only.
        let mut found: Option<usize> = None;
        let admin = presented.ct_eq(&tokens.admin.hash);
        for (i, entry) in tokens.named.iter().enumerate() {
            if bool::from(presented.ct_eq(&entry.hash)) {
                found = Some(i);
            }
        }
        let entry = if bool::from(admin) {
            &mut tokens.admin
        } else {
            &mut tokens.named[found?]
        };
        if entry.info.expires_at_ms != 0 && entry.info.expires_at_ms <= now {
            return None;
        }
        entry.info.last_used_at_ms = now;
        tokens.dirty = true;
        Some(entry.info.scope)
    }

    /// Makes a named token; its secret is returned once and kept nowhere.
    pub fn create(
        &self,
        name: &str,
        scope: Scope,
        expires_in: Option<Duration>,
    ) -> Result<(Secret, TokenInfo), TokenError> {
        pmdaemon_proto::validate_plain_name(name).map_err(|e| TokenError::InvalidName(e.0))?;
        if name == ADMIN_NAME {
            return Err(TokenError::InvalidName(format!(
                "{ADMIN_NAME:?} is the token in {}",
                self.inner.home_path.join(ADMIN_FILE).display()
            )));
        }
        let secret = new_secret()?;
        let now = now_ms();
        let info = TokenInfo {
            name: name.to_string(),
            scope,
            created_at_ms: now,
            expires_at_ms: expires_in
                .map(|d| now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64))
                .unwrap_or(0),
            last_used_at_ms: 0,
        };
        {
            let mut tokens = self.inner.tokens.locked();
            if tokens.named.iter().any(|e| e.info.name == name) {
                return Err(TokenError::AlreadyExists(name.to_string()));
            }
            tokens.named.push(Entry {
                info: info.clone(),
                hash: hash(secret.0.as_bytes()),
            });
        }
        if let Err(e) = self.persist() {
            // Not on disk: not made.
            self.inner
                .tokens
                .locked()
                .named
                .retain(|e| e.info.name != name);
            return Err(e);
        }
        tracing::info!(name, scope = scope.as_str(), "token created");
        Ok((secret, info))
    }

    /// Every token, the admin one first.
    pub fn list(&self) -> Vec<TokenInfo> {
        let tokens = self.inner.tokens.locked();
        std::iter::once(&tokens.admin)
            .chain(tokens.named.iter())
            .map(|e| e.info.clone())
            .collect()
    }

    /// Removes a named token: the next request with it is refused.
    pub fn revoke(&self, name: &str) -> Result<TokenInfo, TokenError> {
        let removed = {
            let mut tokens = self.inner.tokens.locked();
            let at = tokens
                .named
                .iter()
                .position(|e| e.info.name == name)
                .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
            tokens.named.remove(at)
        };
        tracing::info!(name, "token revoked");
        // Revoked in memory even when the write fails: the error says the
        // file still has it (and the next start would bring it back).
        self.persist()?;
        Ok(removed.info)
    }

    /// Writes tokens.json now (named tokens and their last use).
    pub fn persist(&self) -> Result<(), TokenError> {
        let _turn = self.inner.write.locked();
        let file = {
            let mut tokens = self.inner.tokens.locked();
            tokens.dirty = false;
            TokensFile {
                version: 1,
                tokens: tokens
                    .named
                    .iter()
                    .map(|e| StoredToken {
                        name: e.info.name.clone(),
                        sha256: hex(&e.hash),
                        scope: e.info.scope,
                        created_at_ms: e.info.created_at_ms,
                        expires_at_ms: e.info.expires_at_ms,
                        last_used_at_ms: e.info.last_used_at_ms,
                    })
                    .collect(),
            }
        };
        let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        text.push(b'\n');
        replace_at(&self.inner.home, TOKENS_FILE, &text).map_err(|source| TokenError::Io {
            path: self.inner.home_path.join(TOKENS_FILE),
            source,
        })
    }

    /// Writes last-use times every minute when they changed, so a busy
    /// listener costs no disk write per request.
    pub fn spawn_persister(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERSIST_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                store.flush().await;
            }
        });
    }

    /// Writes tokens.json if last-use times changed since the last write.
    pub async fn flush(&self) {
        if !self.inner.tokens.locked().dirty {
            return;
        }
        let store = self.clone();
        let written = tokio::task::spawn_blocking(move || store.persist()).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record when tokens were last used");
        }
    }
}

fn admin_entry(hash: [u8; 32], created_at_ms: i64) -> Entry {
    Entry {
        info: TokenInfo {
            name: ADMIN_NAME.to_string(),
            scope: Scope::Admin,
            created_at_ms,
            expires_at_ms: 0,
            last_used_at_ms: 0,
        },
        hash,
    }
}

fn parse_list(path: &Path, text: &str) -> Result<Vec<Entry>, TokenError> {
    let bad = |message: String| TokenError::MalformedList {
        path: path.to_path_buf(),
        message,
    };
    let file: TokensFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if file.version != 1 {
        return Err(bad(format!("version {} is not 1", file.version)));
    }
    let mut named: Vec<Entry> = Vec::with_capacity(file.tokens.len());
    for t in file.tokens {
        pmdaemon_proto::validate_plain_name(&t.name)
            .map_err(|e| bad(format!("token name: {}", e.0)))?;
        if t.name == ADMIN_NAME || named.iter().any(|e| e.info.name == t.name) {
            return Err(bad(format!("token name {:?} is used twice", t.name)));
        }
        let hash = unhex(&t.sha256)
            .ok_or_else(|| bad(format!("token {:?}: sha256 is not 64 hex digits", t.name)))?;
        named.push(Entry {
            info: TokenInfo {
                name: t.name,
                scope: t.scope,
                created_at_ms: t.created_at_ms,
                expires_at_ms: t.expires_at_ms,
                last_used_at_ms: t.last_used_at_ms,
            },
            hash,
        });
    }
    Ok(named)
}

/// Reads `name` in `dir` without following a link; None when absent. Also
/// returns its modification time (ms), the admin token's creation.
fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<Option<(String, i64)>> {
    use std::io::Read;
    let fd = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(None),
        Err(nix::Error::ELOOP) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link; the daemon only reads its own regular files",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    let mut text = String::new();
    // A token file is small; a huge one is not ours.
    (&mut file).take(1 << 20).read_to_string(&mut text)?;
    let mtime_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(Some((text, mtime_ms)))
}

/// Creates `name` in `dir` with mode 0600 (`O_EXCL`: never an existing file,
/// never through a link) and writes `bytes` to it, synced.
fn write_new_at(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces `name` in `dir` atomically: a new 0600 file, then a rename.
fn replace_at(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = format!(".{name}.tmp");
    // A leftover of a crash mid-write: ours to remove (unlinkat never
    // follows a link, it removes the link itself).
    match nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    write_new_at(dir, &tmp, bytes)?;
    renameat(dir, tmp.as_str(), dir, name)?;
    nix::unistd::fsync(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn admin_secret(home: &Path) -> String {
        std::fs::read_to_string(home.join(ADMIN_FILE))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn admin_token_is_made_once_with_mode_0600() {
        let home = tempfile::tempdir().unwrap();
        let store = TokenStore::load(home.path()).unwrap();
        let secret = admin_secret(home.path());
        assert!(well_formed(&secret), "{secret}");
        for file in [ADMIN_FILE, TOKENS_FILE] {
            let mode = std::fs::metadata(home.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        assert_eq!(store.verify(secret.as_bytes()), Some(Scope::Admin));
        drop(store);
        TokenStore::load(home.path()).unwrap();
        assert_eq!(admin_secret(home.path()), secret, "never rewritten");
    }

    #[test]
    fn malformed_admin_file_or_link_is_refused() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(ADMIN_FILE), "hello\n").unwrap();
        let e = TokenStore::load(home.path()).unwrap_err();
        assert!(matches!(e, TokenError::MalformedAdmin { .. }), "{e}");
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.path().join(ADMIN_FILE)).unwrap();
        assert!(TokenStore::load(home.path()).is_err());
    }

    #[test]
    fn named_tokens_scopes_expiry_revocation() {
        let home = tempfile::tempdir().unwrap();
        let store = TokenStore::load(home.path()).unwrap();
        let (ro, info) = store.create("ci", Scope::ReadOnly, None).unwrap();
        assert_eq!(info.scope, Scope::ReadOnly);
        assert_eq!(store.verify(ro.expose().as_bytes()), Some(Scope::ReadOnly));
        let truncated = &ro.expose()[..ro.expose().len() - 1];
        assert_eq!(store.verify(truncated.as_bytes()), None);
        assert!(matches!(
            store.create("ci", Scope::Admin, None),
            Err(TokenError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.create("admin", Scope::Admin, None),
            Err(TokenError::InvalidName(_))
        ));
        let (gone, _) = store
            .create("old", Scope::Admin, Some(Duration::ZERO))
            .unwrap();
        assert_eq!(store.verify(gone.expose().as_bytes()), None, "expired");
        store.revoke("ci").unwrap();
        assert_eq!(store.verify(ro.expose().as_bytes()), None, "revoked");
        assert!(matches!(store.revoke("ci"), Err(TokenError::NotFound(_))));
        // Hashed on disk, never the secret.
        let text = std::fs::read_to_string(home.path().join(TOKENS_FILE)).unwrap();
        assert!(!text.contains(gone.expose()));
        assert!(text.contains(&hex(&hash(gone.expose().as_bytes()))));
        let again = TokenStore::load(home.path()).unwrap();
        let names: Vec<_> = again.list().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["admin", "old"]);
        assert!(!format!("{:?}", gone).contains(gone.expose()));
    }
}
