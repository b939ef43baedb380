//! Port specs: what an app's `port` setting means ([`PortSpec`]: one port,
//! a range, or `auto:` assignment from a range) and how many instances it
//! can serve ([`PortSpec::check_room`]). Which ports each instance gets, and
//! the checks against other apps and the host, are the daemon's
//! (`server/src/ports/`).

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::{InvalidInput, invalid};

/// A port request as users write it: `3000`, `3000-3003`, `auto:4000-4100`.
/// Serialized as that string, so `state.json` stores `"auto:4000-4100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PortSpec {
    /// One port for the app's single instance.
    Fixed(u16),
    /// Consecutive ports, instance `i` gets `first + i`; the whole range is
    /// reserved for the app. `first <= last`.
    Range { first: u16, last: u16 },
    /// Each instance gets the first free port of the range. `first <= last`.
    Auto { first: u16, last: u16 },
}

impl PortSpec {
    /// Every port the spec names: the one port, the range, or the auto
    /// candidates.
    pub fn ports(&self) -> RangeInclusive<u16> {
        match *self {
            PortSpec::Fixed(port) => port..=port,
            PortSpec::Range { first, last } | PortSpec::Auto { first, last } => first..=last,
        }
    }

    /// The ports this spec keeps for its app whether instances use them or
    /// not: all of a fixed port or range, none of an auto range (there only
    /// the ports assigned to instances count).
    pub fn reserved(&self) -> Option<RangeInclusive<u16>> {
        match self {
            PortSpec::Fixed(_) | PortSpec::Range { .. } => Some(self.ports()),
            PortSpec::Auto { .. } => None,
        }
    }

    /// How many ports [`PortSpec::ports`] has (1..=65535).
    pub fn port_count(&self) -> u32 {
        let range = self.ports();
        u32::from(*range.end()) - u32::from(*range.start()) + 1
    }

    /// Whether the spec has a port for each of `instances` instances (one
    /// port serves one instance); the refusal suggests a spec that would.
    pub fn check_room(&self, instances: u32) -> Result<(), InvalidInput> {
        let count = self.port_count();
        if instances <= count {
            return Ok(());
        }
        let first = *self.ports().start();
        let (wide_first, wide_last) = span(first, instances);
        let (auto_first, auto_last) = span(first, instances.max(101));
        let instances = instances_text(instances);
        Err(invalid(match self {
            PortSpec::Fixed(port) => format!(
                "port {port} with {instances}: one port serves one instance; give a range such as {wide_first}-{wide_last}, or auto:{auto_first}-{auto_last}"
            ),
            PortSpec::Range { .. } => format!(
                "port range {self} has {count} ports for {instances}: widen it ({wide_first}-{wide_last}) or use auto:{auto_first}-{auto_last}"
            ),
            PortSpec::Auto { .. } => format!(
                "port range {self} has {count} ports for {instances}: widen it (auto:{wide_first}-{wide_last})"
            ),
        }))
    }
}

/// `1 instance`, `3 instances`.
pub fn instances_text(instances: u32) -> String {
    match instances {
        1 => "1 instance".to_string(),
        n => format!("{n} instances"),
    }
}

/// `len` consecutive ports starting at `first`, moved down if they would
/// run past 65535.
fn span(first: u16, len: u32) -> (u16, u16) {
    let len = len.clamp(1, 65_535);
    let first = u32::from(first).min(65_536 - len);
    // Both bounds are within 1..=65535 by the clamps above.
    (first as u16, (first + len - 1) as u16)
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Fixed(port) => write!(f, "{port}"),
            PortSpec::Range { first, last } => write!(f, "{first}-{last}"),
            PortSpec::Auto { first, last } => write!(f, "auto:{first}-{last}"),
        }
    }
}

impl FromStr for PortSpec {
    type Err = InvalidInput;

    /// Parses the forms [`Display`](fmt::Display) writes. Surrounding
    /// whitespace is ignored and `auto:` is case-insensitive.
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let text = s.trim();
        let auto_body = text
            .get(..5)
            .filter(|prefix| prefix.eq_ignore_ascii_case("auto:"))
            .map(|_| &text[5..]);
        let body = auto_body.unwrap_or(text);
        let Some((first, last)) = body.split_once('-') else {
            if auto_body.is_some() {
                return Err(invalid_spec(
                    s,
                    "auto: needs a range to pick from, such as auto:4000-4100",
                ));
            }
            return Ok(PortSpec::Fixed(parse_port(s, body)?));
        };
        let (first, last) = (parse_port(s, first)?, parse_port(s, last)?);
        if first > last {
            return Err(invalid_spec(
                s,
                &format!("the range runs backwards ({first} > {last}); write {last}-{first}"),
            ));
        }
        Ok(match auto_body {
            Some(_) => PortSpec::Auto { first, last },
            None => PortSpec::Range { first, last },
        })
    }
}

impl TryFrom<String> for PortSpec {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, InvalidInput> {
        s.parse()
    }
}

impl From<PortSpec> for String {
    fn from(spec: PortSpec) -> String {
        spec.to_string()
    }
}

/// One number of a spec: digits only (no sign), 1..=65535.
fn parse_port(whole: &str, part: &str) -> Result<u16, InvalidInput> {
    let part = part.trim();
    if part.is_empty() {
        return Err(invalid_spec(whole, "a port number is missing"));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_spec(
            whole,
            &format!("{part:?} is not a port number"),
        ));
    }
    match part.parse::<u32>() {
        Ok(0) => Err(invalid_spec(
            whole,
            "port 0 cannot be assigned; ports are 1-65535",
        )),
        Ok(n) => u16::try_from(n)
            .map_err(|_| invalid_spec(whole, &format!("{n} is too large; ports are 1-65535"))),
        Err(_) => Err(invalid_spec(
            whole,
            &format!("{part} is too large; ports are 1-65535"),
        )),
    }
}

fn invalid_spec(whole: &str, why: &str) -> InvalidInput {
    invalid(format!(
        "invalid port {:?}: {why}; write a port (3000), a range (3000-3003) or auto:FIRST-LAST (auto:4000-4100)",
        whole.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(first: u16, last: u16) -> PortSpec {
        PortSpec::Auto { first, last }
    }

    /// Every accepted form reads back as it was written, in text and in
    /// JSON (the form `state.json` stores).
    #[test]
    fn specs_round_trip() {
        for text in [
            "3000",
            "1",
            "65535",
            "3000-3003",
            "7-7",
            "1-65535",
            "auto:4000-4100",
        ] {
            let spec: PortSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), spec);
        }
        assert_eq!(
            " 3000\n".parse::<PortSpec>().unwrap(),
            PortSpec::Fixed(3000)
        );
        assert_eq!(
            "AUTO: 4000 - 4100".parse::<PortSpec>().unwrap(),
            auto(4000, 4100)
        );
        assert_eq!(
            "3000-3003".parse::<PortSpec>().unwrap(),
            PortSpec::Range {
                first: 3000,
                last: 3003
            }
        );
        // Inside a struct, as the daemon's app spec holds it.
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Held {
            port: Option<PortSpec>,
        }
        let held = Held {
            port: Some(auto(4000, 4100)),
        };
        let json = serde_json::to_string(&held).unwrap();
        assert_eq!(json, r#"{"port":"auto:4000-4100"}"#);
        assert_eq!(serde_json::from_str::<Held>(&json).unwrap(), held);
        assert_eq!(
            serde_json::from_str::<Held>(r#"{"port":null}"#).unwrap(),
            Held { port: None }
        );
    }

    /// Bad forms are refused with a message naming the value and the forms
    /// that work.
    #[test]
    fn bad_specs_are_refused() {
        for text in [
            "0",
            "70000",
            "65536",
            "99999999999999999999",
            "5-3",
            "3003-3000",
            "auto:",
            "auto:4000",
            "auto",
            "abc",
            "http",
            "3000-",
            "-3000",
            "+3000",
            "+80",
            "3000-3001-3002",
            "0-10",
            "",
            "30 00",
        ] {
            let msg = text.parse::<PortSpec>().unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("invalid port {:?}: ", text.trim())),
                "{msg}"
            );
            assert!(msg.contains("auto:4000-4100"), "{msg}");
        }
        assert!(serde_json::from_str::<PortSpec>("\"70000\"").is_err());
        let backwards = "5-3".parse::<PortSpec>().unwrap_err().to_string();
        assert!(backwards.contains("write 3-5"), "{backwards}");
        let large = "70000".parse::<PortSpec>().unwrap_err().to_string();
        assert!(large.contains("70000 is too large"), "{large}");
        let lone = "auto:4000".parse::<PortSpec>().unwrap_err().to_string();
        assert!(lone.contains("auto: needs a range"), "{lone}");
    }

    /// What a spec reserves and counts.
    #[test]
    fn reserved_ports_and_counts() {
        let range: PortSpec = "3000-3003".parse().unwrap();
        assert_eq!(range.reserved(), Some(3000..=3003));
        assert_eq!(range.port_count(), 4);
        assert_eq!(PortSpec::Fixed(80).reserved(), Some(80..=80));
        assert_eq!(auto(4000, 4100).reserved(), None);
        assert_eq!(auto(4000, 4100).port_count(), 101);
        assert_eq!("1-65535".parse::<PortSpec>().unwrap().port_count(), 65_535);
    }

    /// One port serves one instance; too few ports are refused with a spec
    /// that would fit, still inside 1-65535.
    #[test]
    fn room_for_the_instances() {
        assert_eq!(PortSpec::Fixed(3000).check_room(1), Ok(()));
        assert_eq!(PortSpec::Fixed(3000).check_room(0), Ok(()));
        assert_eq!(
            PortSpec::Fixed(3000).check_room(3).unwrap_err().to_string(),
            "port 3000 with 3 instances: one port serves one instance; give a range such as \
             3000-3002, or auto:3000-3100"
        );
        let range: PortSpec = "3000-3001".parse().unwrap();
        assert_eq!(range.check_room(2), Ok(()));
        assert_eq!(
            range.check_room(3).unwrap_err().to_string(),
            "port range 3000-3001 has 2 ports for 3 instances: widen it (3000-3002) or use \
             auto:3000-3100"
        );
        let err = auto(4000, 4001).check_room(3).unwrap_err().to_string();
        assert!(err.contains("widen it (auto:4000-4002)"), "{err}");
        let top = PortSpec::Fixed(65535)
            .check_room(2)
            .unwrap_err()
            .to_string();
        assert!(top.contains("65534-65535"), "{top}");
    }
}
