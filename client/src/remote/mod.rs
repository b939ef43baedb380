//! Which daemon `pmd` drives, and with what credentials.
//!
//! [`choose`] applies the precedence, highest first: the flags (`--host`,
//! `--token-file`, `--ca-cert`, `--client-cert`/`--client-key`), the
//! environment (`PMD_HOST`, `PMD_TOKEN_FILE` or `PMD_TOKEN`,
//! `PMD_CA_CERT`), the context named by `--context`/`PMD_CONTEXT`, the
//! current context of the contexts file, and last the local socket. A host
//! given by a flag or the environment never takes a context's files: a
//! context's token is for its own host. With nothing set, `pmd` is what
//! it always was: the Unix socket of `$PMDAEMON_HOME`, started on demand.
//!
//! [`Plan::load`] then reads the files (the token, the CA, the client
//! certificate) into a [`Remote`]; every mistake is a [`UsageError`]
//! naming the flag, variable or context it came from and the fix. The
//! token's value never appears in a message, a Debug output or a log: it
//! is held as a sensitive header value, and messages say where it came
//! from (its file, or PMD_TOKEN).
//!
//! Talks to: [`crate::contexts`] (the file), the token and certificate
//! files, and [`dial`] (the connection itself).

pub mod dial;
pub mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{Ascii, MetadataValue};

use crate::UsageError;
use crate::cli::RemoteArgs;
use crate::contexts::{self, Contexts};
use url::{HostUrl, Scheme};

/// The environment variables `pmd` reads for a remote daemon.
pub const HOST_ENV: &str = "PMD_HOST";
pub const TOKEN_FILE_ENV: &str = "PMD_TOKEN_FILE";
pub const TOKEN_ENV: &str = "PMD_TOKEN";
pub const CA_CERT_ENV: &str = "PMD_CA_CERT";
pub const CONTEXT_ENV: &str = "PMD_CONTEXT";

/// Longest token file read: a token is one short line.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The remote-related environment, read once (tests build their own).
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub host: Option<String>,
    pub token_file: Option<String>,
    /// The token itself: kept out of Debug output.
    pub token: Option<Secret>,
    pub ca_cert: Option<String>,
    pub context: Option<String>,
}

/// A token's text before it becomes a header; Debug says nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Env {
    /// This process's environment. An empty variable counts as unset,
    /// except PMD_TOKEN (set but empty is a mistake worth saying); one
    /// that is not UTF-8 is a usage error.
    pub fn from_process() -> Result<Env, UsageError> {
        let var = |name: &str| -> Result<Option<String>, UsageError> {
            match std::env::var(name) {
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(UsageError(format!(
                    "{name} is not valid UTF-8: set it again, or unset it"
                ))),
            }
        };
        let set = |name: &str| Ok::<_, UsageError>(var(name)?.filter(|v| !v.is_empty()));
        Ok(Env {
            host: set(HOST_ENV)?,
            token_file: set(TOKEN_FILE_ENV)?,
            token: var(TOKEN_ENV)?.map(Secret),
            ca_cert: set(CA_CERT_ENV)?,
            context: set(CONTEXT_ENV)?,
        })
    }
}

/// Where the host came from, for messages ("from context prod").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    /// Named by --context or PMD_CONTEXT (`current` false), or the current
    /// context of the file.
    Context {
        name: String,
        current: bool,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("--host"),
            Origin::Env => f.write_str(HOST_ENV),
            Origin::Context {
                name,
                current: false,
            } => write!(f, "context {name}"),
            Origin::Context {
                name,
                current: true,
            } => write!(f, "the current context ({name})"),
        }
    }
}

/// Where the token is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    /// A file, and what named it (`--token-file`, PMD_TOKEN_FILE, a
    /// context).
    File { path: PathBuf, via: String },
    /// PMD_TOKEN.
    Env(Secret),
}

/// Where the token was taken from, as messages say it (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "the token in {}", path.display()),
            TokenSource::Env => write!(f, "the token in {TOKEN_ENV}"),
        }
    }
}

/// A file, and what named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub path: PathBuf,
    pub via: String,
}

/// What [`choose`] decided, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The Unix socket of `$PMDAEMON_HOME`.
    Local,
    Remote(Box<Plan>),
}

/// A remote daemon and the files to use with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub url: HostUrl,
    pub origin: Origin,
    pub token: Option<TokenFrom>,
    pub ca_cert: Option<Named>,
    /// Client certificate and key, for mutual TLS.
    pub identity: Option<(Named, Named)>,
}

/// Applies the precedence of the module header. `contexts` loads the
/// contexts file (and says where it is) only when no host is given by a
/// flag or the environment.
pub fn choose(
    flags: &RemoteArgs,
    env: &Env,
    contexts: impl FnOnce() -> anyhow::Result<(Contexts, PathBuf)>,
) -> anyhow::Result<Choice> {
    let (url, origin, context) = if let Some(url) = &flags.host {
        (url.clone(), Origin::Flag, None)
    } else if let Some(text) = &env.host {
        let url = HostUrl::parse(text).map_err(|e| UsageError(format!("{HOST_ENV}: {e}")))?;
        (url, Origin::Env, None)
    } else {
        let named = match (&flags.context, &env.context) {
            (Some(name), _) => Some((name.as_str(), "--context")),
            (None, Some(name)) => Some((name.as_str(), CONTEXT_ENV)),
            (None, None) => None,
        };
        match named {
            Some((contexts::LOCAL, _)) => return local(flags),
            Some((name, via)) => {
                let (file, path) = contexts()?;
                let context = file
                    .get(name, &path)
                    .map_err(|e| UsageError(format!("{via}: {e}")))?
                    .clone();
                let origin = Origin::Context {
                    name: name.to_string(),
                    current: false,
                };
                (context.host.clone(), origin, Some(context))
            }
            None => {
                let (file, _) = contexts()?;
                let Some(name) = file.current.clone() else {
                    return local(flags);
                };
                let context = file.contexts[&name].clone();
                let origin = Origin::Context {
                    name: name.to_string(),
                    current: true,
                };
                (context.host.clone(), origin, Some(context))
            }
        }
    };
    let from_context = |path: &Option<contexts::AbsPath>| {
        path.as_ref().map(|p| Named {
            path: p.path().to_path_buf(),
            via: origin.to_string(),
        })
    };
    let named = |path: &Path, via: &str| Named {
        path: path.to_path_buf(),
        via: via.to_string(),
    };
    let token = match (&flags.token_file, &env.token_file, &env.token) {
        (Some(path), _, _) => Some(TokenFrom::File {
            path: path.clone(),
            via: "--token-file".into(),
        }),
        (None, Some(_), Some(_)) => {
            return Err(UsageError(format!(
                "both {TOKEN_FILE_ENV} and {TOKEN_ENV} are set: unset one of them"
            ))
            .into());
        }
        (None, Some(path), None) => Some(TokenFrom::File {
            path: PathBuf::from(path),
            via: TOKEN_FILE_ENV.into(),
        }),
        (None, None, Some(secret)) => Some(TokenFrom::Env(secret.clone())),
        (None, None, None) => context
            .as_ref()
            .and_then(|c| from_context(&c.token_file))
            .map(|n| TokenFrom::File {
                path: n.path,
                via: n.via,
            }),
    };
    let ca_cert = match (&flags.ca_cert, &env.ca_cert) {
        (Some(path), _) => Some(named(path, "--ca-cert")),
        (None, Some(path)) => Some(named(Path::new(path), CA_CERT_ENV)),
        (None, None) => context.as_ref().and_then(|c| from_context(&c.ca_cert)),
    };
    let identity = match (&flags.client_cert, &flags.client_key) {
        (Some(cert), Some(key)) => Some((named(cert, "--client-cert"), named(key, "--client-key"))),
        // clap makes each flag require the other.
        _ => context
            .as_ref()
            .and_then(|c| Some((from_context(&c.client_cert)?, from_context(&c.client_key)?))),
    };
    if url.scheme == Scheme::Http && (ca_cert.is_some() || identity.is_some()) {
        let what = if ca_cert.is_some() {
            "a CA certificate"
        } else {
            "a client certificate"
        };
        return Err(UsageError(format!(
            "{url} (from {origin}) is plain HTTP, so {what} has no use: give https://{} for TLS",
            url.authority()
        ))
        .into());
    }
    Ok(Choice::Remote(Box::new(Plan {
        url,
        origin,
        token,
        ca_cert,
        identity,
    })))
}

/// The local socket, once flags meant for a remote daemon are ruled out
/// (their environment variables are ignored: a shell may export them for
/// other daemons).
fn local(flags: &RemoteArgs) -> anyhow::Result<Choice> {
    let given = [
        ("--token-file", flags.token_file.is_some()),
        ("--ca-cert", flags.ca_cert.is_some()),
        ("--client-cert", flags.client_cert.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
        return Err(UsageError(format!(
            "{flag} is for a remote daemon: give --host URL or --context NAME too (this machine's \
             daemon is reached over its Unix socket, without a token or TLS)"
        ))
        .into());
    }
    Ok(Choice::Local)
}

/// A remote daemon, its files read.
pub struct Remote {
    pub url: HostUrl,
    pub origin: Origin,
    /// `Authorization: Bearer …`, marked sensitive; None: no token.
    token: Option<MetadataValue<Ascii>>,
    pub token_source: Option<TokenSource>,
    /// For https: the rustls configuration (roots, client certificate,
    /// ALPN h2).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The CA file given, for TLS messages.
    pub ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("origin", &self.origin)
            .field("token_source", &self.token_source)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The bearer header value, if a token was given.
    pub fn authorization(&self) -> Option<MetadataValue<Ascii>> {
        self.token.clone()
    }

    /// Where the host came from, when it is worth saying (not for --host).
    pub fn from_where(&self) -> String {
        match self.origin {
            Origin::Flag => String::new(),
            _ => format!(" (from {})", self.origin),
        }
    }
}

impl Plan {
    /// Reads the token, the CA and the client certificate; warns once when
    /// the token would cross the network in clear text, and when the token
    /// file is open to others.
    pub fn load(self) -> anyhow::Result<Remote> {
        let (token, token_source) = match &self.token {
            None => (None, None),
            Some(TokenFrom::Env(secret)) => {
                let value = header_value(&secret.0).map_err(|why| {
                    UsageError(format!(
                        "{TOKEN_ENV} {why}: set it to the token itself, or use --token-file FILE"
                    ))
                })?;
                (Some(value), Some(TokenSource::Env))
            }
            Some(TokenFrom::File { path, via }) => {
                let value = read_token(path, via)?;
                (Some(value), Some(TokenSource::File(path.clone())))
            }
        };
        if let Some(warning) = clear_text_warning(&self.url) {
            eprintln!("[pmd] warning: {warning}");
        }
        let tls = match self.url.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(Arc::new(tls_config(
                self.ca_cert.as_ref(),
                self.identity.as_ref(),
            )?)),
        };
        Ok(Remote {
            url: self.url,
            origin: self.origin,
            token,
            token_source,
            tls,
            ca_cert: self.ca_cert.map(|n| n.path),
        })
    }
}

/// What to say, once, when `url` sends the token in clear text over a
/// network (plain HTTP to a host that is not loopback).
pub fn clear_text_warning(url: &HostUrl) -> Option<String> {
    (url.scheme == Scheme::Http && !url.is_loopback()).then(|| {
        format!(
            "{url} is plain HTTP: the token and everything else travel in clear text; use \
             https:// (pmdaemond --tls-cert/--tls-key)"
        )
    })
}

/// `Bearer TOKEN` as a sensitive header value, or why the text is no
/// token (without quoting it).
fn header_value(token: &str) -> Result<MetadataValue<Ascii>, &'static str> {
    let token = token.trim();
    if token.is_empty() {
        return Err("is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "does not look like a token (one line of printable ASCII characters without spaces)",
        );
    }
    let mut value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "does not look like a token")?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a token file (see [`header_value`]); warns when group or others
/// may read it.
fn read_token(path: &Path, via: &str) -> Result<MetadataValue<Ascii>, UsageError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let fix = "give the file that holds the token (the admin token is $PMDAEMON_HOME/token on the \
               daemon's host; `pmd token create NAME` there makes another)";
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError(format!("{via}: cannot read {shown}: {e}; {fix}")))?;
    let meta = file
        .metadata()
        .map_err(|e| UsageError(format!("{via}: cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(UsageError(format!("{via}: {shown} is not a file; {fix}")));
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(UsageError(format!(
            "{via}: {shown} is {} bytes, too large to hold a token; {fix}",
            meta.len()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        eprintln!(
            "[pmd] warning: the token file {shown} is open to group or others (mode {mode:o}): \
             chmod 600 {shown}"
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError(format!("{via}: cannot read {shown}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        UsageError(format!(
            "{via}: {shown} does not look like a token (not text); {fix}"
        ))
    })?;
    header_value(&text).map_err(|why| UsageError(format!("{via}: {shown} {why}; {fix}")))
}

/// Reads the PEM certificates of `file`.
fn certificates(file: &Named) -> Result<Vec<CertificateDer<'static>>, UsageError> {
    let shown = file.path.display();
    let via = &file.via;
    let bytes = std::fs::read(&file.path)
        .map_err(|e| UsageError(format!("{via}: cannot read {shown}: {e}")))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| UsageError(format!("{via}: {shown} is not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(UsageError(format!(
            "{via}: {shown} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

/// The rustls client configuration: ring, the CA of `ca_cert` (else the
/// system's roots), the client certificate for mutual TLS, ALPN h2.
fn tls_config(
    ca_cert: Option<&Named>,
    identity: Option<&(Named, Named)>,
) -> Result<rustls::ClientConfig, UsageError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(file) => {
            for cert in certificates(file)? {
                roots.add(cert).map_err(|e| {
                    UsageError(format!(
                        "{}: {} holds a certificate rustls cannot use as a CA ({e})",
                        file.via,
                        file.path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(UsageError(format!(
                    "found no CA certificates on this system to check the daemon's certificate \
                     with: pass the CA that signed it with --ca-cert FILE (or {CA_CERT_ENV})"
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UsageError(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = certificates(cert)?;
            let key_bytes = std::fs::read(&key.path).map_err(|e| {
                UsageError(format!(
                    "{}: cannot read {}: {e}",
                    key.via,
                    key.path.display()
                ))
            })?;
            let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                UsageError(format!(
                    "{}: {} holds no PEM private key ({e})",
                    key.via,
                    key.path.display()
                ))
            })?;
            builder.with_client_auth_cert(certs, private).map_err(|e| {
                UsageError(format!(
                    "{} and {}: the client certificate and key do not go together ({e})",
                    cert.path.display(),
                    key.path.display()
                ))
            })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests;
