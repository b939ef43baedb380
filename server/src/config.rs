//! The daemon's config file, `$PMDAEMON_HOME/config.yaml`: the TCP
//! listener's settings (`listen`, `tls`, `insecure_remote`, `cors_origins`,
//! `limits`), so that a daemon `pmd` starts on demand gets the same ones as
//! one started by hand. Flags override it ([`RemoteFlags::over`]).
//!
//! Unknown keys are refused with the nearest known one suggested; any error
//! reads `FILE:LINE:COL: message` and stops the daemon. Relative TLS paths
//! are relative to the home. An absent file is an empty one.
//!
//! Talks to: the binary (`main.rs`), which loads it and hands the result to
//! `run()` as [`crate::RemoteOptions`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::serve::tcp::{Limits, RemoteOptions, TlsFiles};

/// The config file's name in the home.
pub const FILE_NAME: &str = "config.yaml";

/// Why config.yaml cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}{at}: {message}")]
pub struct ConfigError {
    path: PathBuf,
    /// `:LINE:COL`, when known.
    at: String,
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<Addr>,
    tls: Option<Tls>,
    #[serde(default)]
    insecure_remote: bool,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<Size>,
    max_connections: Option<u32>,
    max_concurrent_streams: Option<u32>,
    header_read_timeout: Option<Dur>,
    idle_timeout: Option<Dur>,
}

/// Keys of each section, for suggestions.
const TOP_KEYS: &[&str] = &["listen", "tls", "insecure_remote", "cors_origins", "limits"];
const TLS_KEYS: &[&str] = &["cert", "key", "client_ca"];
const LIMIT_KEYS: &[&str] = &[
    "max_body_bytes",
    "max_connections",
    "max_concurrent_streams",
    "header_read_timeout",
    "idle_timeout",
];

/// `ADDR:PORT`, checked where it is written (so the error has its line).
struct Addr(SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Addr).map_err(|_| {
            serde::de::Error::custom(format!(
                "listen: {text:?} is not ADDR:PORT (e.g. 127.0.0.1:7070 or [::1]:7070)"
            ))
        })
    }
}

/// A size: bytes, or with a unit (`4M`).
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => pmdaemon_proto::parse_size("max_body_bytes", &s)
                .map(Size)
                .map_err(|e| serde::de::Error::custom(e.0)),
        }
    }
}

/// A duration: milliseconds, or with a unit (`10s`).
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        match pmdaemon_proto::parse_duration("limits", &text) {
            Ok(d) if d.is_zero() => Err(serde::de::Error::custom("must be more than 0")),
            Ok(d) => Ok(Dur(d)),
            Err(e) => Err(serde::de::Error::custom(e.0)),
        }
    }
}

/// The file's settings: what the flags did not say.
#[derive(Debug, Default)]
pub struct FileSettings {
    options: RemoteOptions,
}

/// The TCP listener's flags (`--listen`, `--tls-*`, `--insecure-remote`).
#[derive(Debug, Default)]
pub struct RemoteFlags {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub insecure_remote: bool,
}

impl RemoteFlags {
    /// The flags over the file: given addresses replace the file's, given
    /// TLS files replace the file's, `--insecure-remote` adds to it.
    pub fn over(self, file: FileSettings) -> RemoteOptions {
        let mut options = file.options;
        if !self.listen.is_empty() {
            options.listen = self.listen;
        }
        if self.tls.is_some() {
            options.tls = self.tls;
        }
        options.insecure_remote |= self.insecure_remote;
        options
    }
}

/// Reads `$home/config.yaml` (absent: no settings).
pub fn load(home: &Path) -> Result<FileSettings, ConfigError> {
    let path = home.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileSettings::default()),
        Err(e) => {
            return Err(ConfigError {
                path,
                at: String::new(),
                message: e.to_string(),
            });
        }
    };
    parse(&path, home, &text)
}

fn parse(path: &Path, home: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError {
                path: path.to_path_buf(),
                at,
                message: explain(&e.to_string()),
            }
        })?
    };
    let defaults = Limits::default();
    let in_home = |p: PathBuf| if p.is_absolute() { p } else { home.join(p) };
    Ok(FileSettings {
        options: RemoteOptions {
            listen: file.listen.into_iter().map(|a| a.0).collect(),
            tls: file.tls.map(|t| TlsFiles {
                cert: in_home(t.cert),
                key: in_home(t.key),
                client_ca: t.client_ca.map(in_home),
            }),
            insecure_remote: file.insecure_remote,
            cors_origins: file.cors_origins,
            limits: Limits {
                max_body_bytes: file
                    .limits
                    .max_body_bytes
                    .map_or(defaults.max_body_bytes, |s| s.0),
                max_connections: file
                    .limits
                    .max_connections
                    .unwrap_or(defaults.max_connections)
                    .max(1),
                max_concurrent_streams: file
                    .limits
                    .max_concurrent_streams
                    .unwrap_or(defaults.max_concurrent_streams)
                    .max(1),
                header_read_timeout: file
                    .limits
                    .header_read_timeout
                    .map_or(defaults.header_read_timeout, |d| d.0),
                idle_timeout: file
                    .limits
                    .idle_timeout
                    .map_or(defaults.idle_timeout, |d| d.0),
            },
        },
    })
}

/// serde_yaml's message, with the location cut (it is in front) and, for
/// an unknown key, the nearest known one.
fn explain(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    // serde_yaml puts the section in front: `limits: unknown field ...`.
    let Some(start) = message.find("unknown field `") else {
        return message.to_string();
    };
    let (section, rest) = (
        &message[..start],
        &message[start + "unknown field `".len()..],
    );
    let key = rest.split('`').next().unwrap_or_default();
    let candidates = [TOP_KEYS, TLS_KEYS, LIMIT_KEYS]
        .into_iter()
        .find(|keys| keys.iter().any(|k| message.contains(&format!("`{k}`"))))
        .unwrap_or(TOP_KEYS);
    let nearest = candidates
        .iter()
        .filter_map(|c| {
            let edits = strsim::damerau_levenshtein(key, c);
            (edits <= (c.len() / 4).max(1) || strsim::jaro_winkler(key, c) > 0.85)
                .then_some((edits, *c))
        })
        .min();
    match nearest {
        Some((_, best)) => format!("{section}unknown key `{key}`, did you mean `{best}`?"),
        None => format!(
            "{section}unknown key `{key}`; known here: {}",
            candidates.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<RemoteOptions, String> {
        parse(Path::new("/h/config.yaml"), Path::new("/h"), text)
            .map(|f| f.options)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_and_defaults() {
        let o = parsed(
            "listen: ['127.0.0.1:7070']\ntls: {cert: c.pem, key: /k.pem}\nlimits:\n  max_body_bytes: 1M\n  header_read_timeout: 3s\n",
        )
        .unwrap();
        assert_eq!(o.listen, ["127.0.0.1:7070".parse().unwrap()]);
        let tls = o.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/h/c.pem"));
        assert_eq!(tls.key, Path::new("/k.pem"));
        assert_eq!(o.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(o.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(o.limits.max_connections, Limits::default().max_connections);
        assert_eq!(parsed("").unwrap().listen, []);
    }

    #[test]
    fn errors_have_file_line_and_suggestion() {
        let e = parsed("listen: []\nlisen: []\n").unwrap_err();
        assert!(e.starts_with("/h/config.yaml:2:"), "{e}");
        assert!(e.contains("did you mean `listen`"), "{e}");
        let e = parsed("limits:\n  max_conections: 3\n").unwrap_err();
        assert!(e.contains("did you mean `max_connections`"), "{e}");
        let e = parsed("listen: ['nowhere']\n").unwrap_err();
        assert!(e.starts_with("/h/config.yaml:1:"), "{e}");
        assert!(e.contains("ADDR:PORT"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse(
            Path::new("/h/config.yaml"),
            Path::new("/h"),
            "listen: ['127.0.0.1:1']\ninsecure_remote: true\n",
        )
        .unwrap();
        let flags = RemoteFlags {
            listen: vec!["127.0.0.1:2".parse().unwrap()],
            ..Default::default()
        };
        let o = flags.over(file);
        assert_eq!(o.listen, ["127.0.0.1:2".parse().unwrap()]);
        assert!(o.insecure_remote);
    }
}
