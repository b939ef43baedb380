//! `google.api.http` path templates (`/v1/processes/{target}:stop`): parsed
//! once per rule, matched against request paths by the dispatcher in
//! `mod.rs`, and turned into the axum path a rule is registered under.
//!
//! Supported: literal segments, `{field}` and `{field=*}` (one segment,
//! `field` may be a dotted path into nested messages), and a trailing
//! `:verb`. Multi-segment captures (`**`) are refused when the router is
//! built, so a rule we cannot serve is never silently misrouted.

use super::GatewayError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Dotted field path the segment's (percent-decoded) value goes to.
    Field(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    verb: Option<String>,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, GatewayError> {
        let bad = |why: &str| GatewayError::Template {
            template: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| bad("must start with /"))?;
        // Split on '/' and find the verb (the last ':' outside braces, after
        // the last '/').
        let mut depth = 0;
        let mut raw_segments = vec![String::new()];
        let mut verb: Option<String> = None;
        for c in rest.chars() {
            if let Some(v) = verb.as_mut() {
                if c == '/' || c == '{' || c == '}' {
                    return Err(bad("a verb must end the template"));
                }
                v.push(c);
                continue;
            }
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if !(0..=1).contains(&depth) {
                return Err(bad("unbalanced braces"));
            }
            match c {
                '/' if depth == 0 => raw_segments.push(String::new()),
                ':' if depth == 0 => verb = Some(String::new()),
                _ => raw_segments.last_mut().expect("never empty").push(c),
            }
        }
        if depth != 0 {
            return Err(bad("unbalanced braces"));
        }
        if verb.as_deref() == Some("") {
            return Err(bad("empty verb"));
        }
        let mut segments = Vec::new();
        for raw in raw_segments {
            if raw.is_empty() {
                return Err(bad("empty segment"));
            }
            if let Some(inner) = raw.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| bad("a variable must be a whole segment"))?;
                let field = match inner.split_once('=') {
                    None => inner,
                    Some((field, "*")) => field,
                    Some(_) => return Err(bad("only single-segment variables are supported")),
                };
                if field.is_empty() {
                    return Err(bad("empty variable name"));
                }
                segments.push(Segment::Field(field.to_string()));
            } else if raw.contains(['{', '}', '*']) {
                return Err(bad("wildcards are not supported"));
            } else {
                segments.push(Segment::Literal(raw));
            }
        }
        Ok(Template { segments, verb })
    }

    /// The path axum routes on: variables become positional captures
    /// (`{p1}`), so rules that name their variable differently at the same
    /// place share one axum route; a variable with a verb (`{target}:stop`)
    /// is the same capture too (axum cannot split a segment), and
    /// [`Template::matches`] tells the rules apart.
    pub(crate) fn axum_path(&self) -> String {
        let mut path = String::new();
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate() {
            path.push('/');
            match segment {
                Segment::Literal(lit) => {
                    path.push_str(lit);
                    if i == last
                        && let Some(verb) = &self.verb
                    {
                        path.push(':');
                        path.push_str(verb);
                    }
                }
                Segment::Field(_) => path.push_str(&format!("{{p{i}}}")),
            }
        }
        path
    }

    /// The dotted field paths of the variables, in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(f) => Some(f.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub(crate) fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// The variables' values when `path` (as sent, percent-encoded) is one
    /// of this template's; None otherwise.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        if let Some(verb) = &self.verb {
            let last = parts.last_mut().expect("never empty");
            *last = last.strip_suffix(verb.as_str())?.strip_suffix(':')?;
        }
        let mut vars = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(lit) => {
                    if lit != part {
                        return None;
                    }
                }
                Segment::Field(field) => {
                    if part.is_empty() {
                        return None;
                    }
                    vars.push((field.clone(), percent_decode(part)?));
                }
            }
        }
        Some(vars)
    }

    /// A concrete path of this template with `value(field)` in each
    /// variable (tests and the OpenAPI agreement check).
    #[cfg(test)]
    pub(crate) fn fill(&self, value: impl Fn(&str) -> String) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(lit) => path.push_str(lit),
                Segment::Field(f) => path.push_str(&value(f)),
            }
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        path
    }
}

/// `%XX` decoding of one path segment or query component (with `+` as a
/// space when `plus` is set); None when the result is not UTF-8 or an
/// escape is malformed.
pub(crate) fn decode_component(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_decode(s: &str) -> Option<String> {
    decode_component(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_match() {
        let t = Template::parse("/v1/processes/{target}:stop").unwrap();
        assert_eq!(t.axum_path(), "/v1/processes/{p2}");
        assert_eq!(
            t.matches("/v1/processes/api%20x:stop"),
            Some(vec![("target".into(), "api x".into())])
        );
        assert_eq!(t.matches("/v1/processes/api"), None);
        assert_eq!(t.matches("/v1/processes/:stop"), None);
        let t = Template::parse("/v1/apps:apply").unwrap();
        assert_eq!(t.axum_path(), "/v1/apps:apply");
        assert_eq!(t.matches("/v1/apps:apply"), Some(vec![]));
        let t = Template::parse("/v1/processes/{target=*}").unwrap();
        assert_eq!(
            t.matches("/v1/processes/a:b"),
            Some(vec![("target".into(), "a:b".into())])
        );
        for bad in ["v1/x", "/v1/{a=**}", "/v1/*", "/v1/{a", "/v1/x:", "/v1//x"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
