//! Balanced ports, as values: how connections are handed out
//! ([`BalanceStrategy`]), the defaults of a balanced app (its instances'
//! private port range, how long new connections wait for a ready
//! instance), and what a public port must be ([`check_public_port`]). The
//! CLI, the ecosystem reader and the daemon check them here; the daemon's
//! `balancer/` does the balancing.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{InvalidInput, PortSpec, invalid};

/// Where a balanced app's instances get their private ports when the app
/// names none: below Linux's ephemeral range (32768-60999), so an outgoing
/// connection never holds one, and away from the well-known ports.
pub const DEFAULT_INSTANCE_PORTS: PortSpec = PortSpec::Auto {
    first: 20000,
    last: 29999,
};

/// How long a new connection waits for a ready instance (a single
/// instance restarting) before it is refused.
pub const DEFAULT_HOLD_TIMEOUT_MS: u64 = 5_000;

/// Connections that may wait for a ready instance at once; more are refused
/// at once, so a restart under a flood holds bounded memory and
/// descriptors.
pub const MAX_HELD_CONNECTIONS: usize = 1024;

/// How a balanced port picks the instance of each new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalanceStrategy {
    /// The next ready instance in turn.
    #[default]
    RoundRobin,
    /// The ready instance with the fewest open connections (ties: in turn).
    LeastConnections,
}

impl BalanceStrategy {
    pub const WORDS: &'static str = "round-robin or least-connections";

    pub fn word(self) -> &'static str {
        match self {
            BalanceStrategy::RoundRobin => "round-robin",
            BalanceStrategy::LeastConnections => "least-connections",
        }
    }
}

/// The wire value, for the daemon's answers and the CLI's requests.
impl From<BalanceStrategy> for crate::v1::BalanceStrategy {
    fn from(s: BalanceStrategy) -> Self {
        match s {
            BalanceStrategy::RoundRobin => crate::v1::BalanceStrategy::RoundRobin,
            BalanceStrategy::LeastConnections => crate::v1::BalanceStrategy::LeastConnections,
        }
    }
}

impl fmt::Display for BalanceStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl FromStr for BalanceStrategy {
    type Err = InvalidInput;

    /// The words, and the spellings of nginx and HAProxy (`roundrobin`,
    /// `least_conn`, `leastconn`).
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "round-robin" | "roundrobin" | "rr" => Ok(BalanceStrategy::RoundRobin),
            "least-connections" | "least-conn" | "leastconn" | "least-connection" => {
                Ok(BalanceStrategy::LeastConnections)
            }
            _ => Err(invalid(format!(
                "{} is not a balance strategy: use {}",
                crate::wording::Quoted(s),
                Self::WORDS
            ))),
        }
    }
}

/// The public port of a balanced app: one port (the daemon listens on it;
/// the instances get private ports). A range or `auto:` is refused with
/// what to write instead.
pub fn check_public_port(port: Option<PortSpec>) -> Result<u16, InvalidInput> {
    match port {
        Some(PortSpec::Fixed(port)) => Ok(port),
        Some(spec @ (PortSpec::Range { first, .. } | PortSpec::Auto { first, .. })) => {
            Err(invalid(format!(
                "a balanced app listens on one public port, not {spec}: give one port (e.g. \
                 {first}); its instances get private ports from balance.instance_ports \
                 (default {DEFAULT_INSTANCE_PORTS})"
            )))
        }
        None => Err(invalid(format!(
            "a balanced app needs its public port: add --port PORT (ecosystem: `port: 3000`); \
             its instances get private ports from {DEFAULT_INSTANCE_PORTS}"
        ))),
    }
}

/// The address of a public port: an IP address (`127.0.0.1`, `::`), not a
/// host name, which could resolve to several or change.
pub fn parse_balance_address(text: &str) -> Result<IpAddr, InvalidInput> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed.parse().map_err(|_| {
        invalid(format!(
            "{} is not an IP address: write one such as 127.0.0.1, 0.0.0.0 or ::",
            crate::wording::Quoted(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_read_their_words_and_the_usual_spellings() {
        for (text, want) in [
            ("round-robin", BalanceStrategy::RoundRobin),
            ("roundrobin", BalanceStrategy::RoundRobin),
            ("least-connections", BalanceStrategy::LeastConnections),
            ("least_conn", BalanceStrategy::LeastConnections),
            ("LEASTCONN", BalanceStrategy::LeastConnections),
        ] {
            assert_eq!(text.parse::<BalanceStrategy>().unwrap(), want, "{text}");
        }
        let err = "random".parse::<BalanceStrategy>().unwrap_err().0;
        assert!(err.contains("round-robin or least-connections"), "{err}");
        for s in [
            BalanceStrategy::RoundRobin,
            BalanceStrategy::LeastConnections,
        ] {
            assert_eq!(s.word().parse::<BalanceStrategy>().unwrap(), s);
        }
    }

    #[test]
    fn a_public_port_is_one_port() {
        assert_eq!(
            check_public_port(Some(PortSpec::Fixed(3000))).unwrap(),
            3000
        );
        let range = check_public_port(Some("3000-3003".parse().unwrap()))
            .unwrap_err()
            .0;
        assert!(range.contains("one public port, not 3000-3003"), "{range}");
        assert!(range.contains("e.g. 3000"), "{range}");
        let none = check_public_port(None).unwrap_err().0;
        assert!(none.contains("--port"), "{none}");
    }

    #[test]
    fn addresses_are_ip_addresses() {
        assert_eq!(
            parse_balance_address("127.0.0.1").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(parse_balance_address("[::1]").unwrap().is_loopback());
        let err = parse_balance_address("localhost").unwrap_err().0;
        assert!(err.contains("not an IP address"), "{err}");
    }

    #[test]
    fn the_default_private_range_is_below_the_ephemeral_ports() {
        assert!(*DEFAULT_INSTANCE_PORTS.ports().end() < 32768);
        assert!(DEFAULT_INSTANCE_PORTS.port_count() >= 1024);
    }
}
