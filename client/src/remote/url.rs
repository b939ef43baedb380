//! The address of a remote daemon, as `--host`, `PMD_HOST` and contexts
//! give it: `https://HOST:PORT` (TLS), `http://HOST:PORT` (h2c, plain
//! text), or a bare `HOST:PORT` (https). HOST is a DNS name, an IPv4
//! address or a bracketed IPv6 address. The port is required: a daemon
//! listens where `pmdaemond --listen` put it, there is no default.
//!
//! Talks to: nothing (pure parsing).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// How the connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TLS (rustls, ALPN h2).
    Https,
    /// HTTP/2 without TLS: the token and everything else in clear text.
    Http,
}

/// A parsed daemon address (in the contexts file, as its text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostUrl {
    pub scheme: Scheme,
    /// A DNS name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
}

/// Why a daemon address is not one; said after the flag or variable that
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the address is empty: give https://HOST:PORT")]
    Empty,
    #[error("{0:?}: the scheme must be https:// or http://, e.g. https://HOST:PORT")]
    Scheme(String),
    #[error("{0:?} has no host: give https://HOST:PORT")]
    NoHost(String),
    #[error(
        "{0:?} has no port: give the port the daemon listens on (`pmdaemond --listen`), e.g. https://HOST:7070"
    )]
    NoPort(String),
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    Port(String),
    #[error(
        "{0:?}: {1} cannot be part of a daemon address: give https://HOST:PORT and nothing else"
    )]
    Extra(String, &'static str),
    #[error("{0:?}: {1:?} is not a host name or an IP address")]
    Host(String, String),
}

impl HostUrl {
    pub fn parse(text: &str) -> Result<HostUrl, UrlError> {
        let whole = text.to_string();
        let text = text.trim();
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some(_) => return Err(UrlError::Scheme(whole)),
            None => (Scheme::Https, text),
        };
        // A trailing slash is what people paste; anything after it is not.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        for (c, what) in [
            ('/', "a path"),
            ('?', "a query"),
            ('#', "a fragment"),
            ('@', "a user name"),
        ] {
            if rest.contains(c) {
                return Err(UrlError::Extra(whole, what));
            }
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(UrlError::Host(whole, rest.to_string()));
            };
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(UrlError::Host(whole, host.to_string()));
            }
            match after.strip_prefix(':') {
                Some(port) => (host, port),
                None if after.is_empty() => return Err(UrlError::NoPort(whole)),
                None => return Err(UrlError::Host(whole, rest.to_string())),
            }
        } else {
            match rest.rsplit_once(':') {
                // An IPv6 address needs brackets, or its last group would
                // read as the port.
                Some((host, _)) if host.contains(':') => {
                    return Err(UrlError::Host(
                        whole,
                        format!("{host} (IPv6 needs [brackets])"),
                    ));
                }
                Some((host, port)) => (host, port),
                None => return Err(UrlError::NoPort(whole)),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(whole));
        }
        if port.is_empty() {
            return Err(UrlError::NoPort(whole));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(UrlError::Port(whole)),
        };
        if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
            return Err(UrlError::Host(whole, host.to_string()));
        }
        Ok(HostUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether the host is this machine: `localhost`, 127.0.0.0/8, ::1.
    /// Only a name or literal address is judged, never a DNS answer.
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host == "localhost" || self.host.ends_with(".localhost"),
        }
    }

    /// `HOST:PORT`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HostUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl TryFrom<String> for HostUrl {
    type Error = UrlError;
    fn try_from(text: String) -> Result<Self, UrlError> {
        HostUrl::parse(&text)
    }
}

impl From<HostUrl> for String {
    fn from(url: HostUrl) -> String {
        url.to_string()
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1-63, at most
/// 253 in all (a trailing dot allowed).
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> HostUrl {
        HostUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn schemes_hosts_and_ports() {
        let u = ok("https://pm.example.com:7070");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Https, "pm.example.com", 7070)
        );
        assert_eq!(u.to_string(), "https://pm.example.com:7070");
        let u = ok("http://127.0.0.1:7070/");
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.to_string(), "http://127.0.0.1:7070");
        // Bare HOST:PORT is TLS.
        let u = ok("box:443");
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.to_string(), "https://box:443");
        let u = ok("HTTPS://[::1]:7070");
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:7070");
        assert_eq!(u.to_string(), "https://[::1]:7070");
        assert_eq!(ok("Web-1.Example.COM:1").host, "web-1.example.com");
    }

    #[test]
    fn loopback_is_judged_by_name_or_literal() {
        for text in [
            "localhost:1",
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "api.localhost:1",
        ] {
            assert!(ok(text).is_loopback(), "{text}");
        }
        for text in [
            "10.0.0.1:1",
            "example.com:1",
            "[fe80::1]:1",
            "localhost.example:1",
        ] {
            assert!(!ok(text).is_loopback(), "{text}");
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("  ", "empty"),
            ("ftp://h:1", "scheme must be https:// or http://"),
            ("https://h", "has no port"),
            ("https://h:", "has no port"),
            ("h", "has no port"),
            ("https://:7070", "has no host"),
            ("https://h:0", "from 1 to 65535"),
            ("https://h:70000", "from 1 to 65535"),
            ("https://h:+1", "from 1 to 65535"),
            ("https://h:x", "from 1 to 65535"),
            ("https://h:1/v1", "a path"),
            ("https://h:1?a=b", "a query"),
            ("https://u@h:1", "a user name"),
            ("https://::1:7070", "IPv6 needs [brackets]"),
            ("https://[zz]:1", "not a host name"),
            ("https://[::1]", "has no port"),
            ("https://h_ x:1", "not a host name"),
            ("https://-h:1", "not a host name"),
        ];
        for (text, why) in cases {
            let err = HostUrl::parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
