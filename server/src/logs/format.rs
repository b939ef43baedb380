//! How a sink's lines look in its files: as printed, behind a timestamp
//! (`time`: RFC 3339 in UTC and a space; PM2's `log_date_format`: that
//! format in the daemon's local time and `": "`, as PM2 writes it), or one
//! JSON object per line (PM2's `log_type: json`). Followers and the ring
//! always get the lines as printed; only files are formatted.
//!
//! The date format is parsed once, when the sink is opened
//! ([`pmdaemon_proto::DateFormat`]); a chunk of lines gets one timestamp,
//! rendered once. Pure but for the clock and the zone the caller hands in.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memchr;
use pmdaemon_proto::{DateFormat, LocalTime};

use super::Stream;

/// What a sink does to its lines before they reach its files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LineFormat {
    /// As printed.
    #[default]
    Plain,
    /// `2026-11-26T04:26:30.123Z line` (pmd's `time`).
    Rfc3339,
    /// `<date>: line` (PM2's `log_date_format`).
    Date(Arc<DateFormat>),
    /// `{"message":"line\n","timestamp":...,"type":"out","process_id":N,
    /// "app_name":"..."}`; the timestamp in the date format when there is
    /// one, else RFC 3339 in UTC with milliseconds (JavaScript's
    /// `toISOString`, PM2's default).
    Json(Option<Arc<DateFormat>>),
}

impl LineFormat {
    /// The text put before each line, or the `timestamp` of a JSON
    /// object, for a chunk read at `now`; None when lines go as printed.
    pub(super) fn stamp(&self, now: SystemTime) -> Option<String> {
        match self {
            LineFormat::Plain => None,
            LineFormat::Rfc3339 | LineFormat::Json(None) => {
                Some(humantime::format_rfc3339_millis(now).to_string())
            }
            LineFormat::Date(format) | LineFormat::Json(Some(format)) => {
                let mut out = String::with_capacity(32);
                format.render(&local_time(now), &mut out);
                Some(out)
            }
        }
    }

    /// What separates a prefix from its line: a space after pmd's own
    /// stamp, PM2's `": "` after a date format.
    fn separator(&self) -> &'static [u8] {
        match self {
            LineFormat::Date(_) => b": ",
            _ => b" ",
        }
    }

    pub(super) fn is_json(&self) -> bool {
        matches!(self, LineFormat::Json(_))
    }

    /// `data` as it goes to a file, into `out`; false (and `out` left
    /// alone) when it goes as it is. `continuing`: the first piece of
    /// `data` continues a line this writer left open in that file (it gets
    /// no prefix). JSON objects always end their line, so a piece of an
    /// over-long line is an object of its own.
    pub(super) fn render(
        &self,
        out: &mut Vec<u8>,
        data: &[u8],
        stamp: &str,
        continuing: bool,
        who: &JsonWho,
    ) -> bool {
        out.clear();
        match self {
            LineFormat::Plain => return false,
            LineFormat::Json(_) => json_lines(out, data, stamp, who),
            _ => prefix_lines(out, data, stamp.as_bytes(), self.separator(), continuing),
        }
        true
    }
}

/// The fields of a JSON line that say whose line it is, escaped once.
#[derive(Debug, Clone)]
pub(super) struct JsonWho {
    /// `,"type":"out","process_id":3,"app_name":"api"}` and a newline.
    tail: String,
}

impl JsonWho {
    pub(super) fn new(stream: Stream, id: u32, name: &str) -> Self {
        let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
        JsonWho {
            tail: format!(
                ",\"type\":\"{}\",\"process_id\":{id},\"app_name\":{name}}}\n",
                stream.as_str()
            ),
        }
    }
}

/// One JSON object per line of `data`, in PM2's field order; the message
/// keeps its newline, as PM2's does (it is the text the app wrote). Bytes
/// that are not UTF-8 become U+FFFD, as in PM2 (`data.toString()`).
fn json_lines(out: &mut Vec<u8>, data: &[u8], stamp: &str, who: &JsonWho) {
    let stamp = serde_json::to_string(stamp).unwrap_or_else(|_| "\"\"".into());
    let mut start = 0;
    while start < data.len() {
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |nl| start + nl + 1);
        let message = String::from_utf8_lossy(&data[start..end]);
        out.extend_from_slice(b"{\"message\":");
        // Serializing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &*message);
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(stamp.as_bytes());
        out.extend_from_slice(who.tail.as_bytes());
        start = end;
    }
}

/// `out` = `data` with `stamp` and `sep` before each line, except the
/// first when it continues an open line.
pub(super) fn prefix_lines(out: &mut Vec<u8>, data: &[u8], stamp: &[u8], sep: &[u8], open: bool) {
    let mut start = 0;
    while start < data.len() {
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |nl| start + nl + 1);
        if !(open && start == 0) {
            out.extend_from_slice(stamp);
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&data[start..end]);
        start = end;
    }
}

/// The text of a line of a JSON log file (its `message` without the
/// newline), or None when the line is not one of its objects.
pub(crate) fn json_message(line: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Line {
        message: String,
    }
    let parsed: Line = serde_json::from_slice(line).ok()?;
    let mut text = parsed.message.into_bytes();
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    Some(text)
}

/// `now` in the daemon's local time zone (TZ, else /etc/localtime), as
/// PM2's dayjs formats it.
pub(crate) fn local_time(now: SystemTime) -> LocalTime {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = nix::libc::time_t::try_from(since.as_secs()).unwrap_or(nix::libc::time_t::MAX);
    // SAFETY: localtime_r only writes the `tm` it is given; an all-zero
    // `tm` is a valid value of that plain C struct.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !nix::libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        // Out of the C library's range: UTC, as the RFC 3339 stamp says.
        return utc_time(since.as_secs(), since.subsec_millis());
    }
    LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        weekday: tm.tm_wday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec.min(59) as u32,
        millis: since.subsec_millis(),
        offset_secs: i32::try_from(tm.tm_gmtoff).unwrap_or(0),
    }
}

/// A time as UTC (the fallback of [`local_time`]).
fn utc_time(secs: u64, millis: u32) -> LocalTime {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    LocalTime {
        year,
        month,
        day,
        weekday: ((days + 4) % 7) as u32,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        millis,
        offset_secs: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> JsonWho {
        JsonWho::new(Stream::Err, 7, "api \"v2\"")
    }

    #[test]
    fn json_lines_are_pm2s_objects() {
        let mut out = Vec::new();
        assert!(LineFormat::Json(None).render(
            &mut out,
            b"a\"b\n\x1b\xff\nrest",
            "T",
            false,
            &who()
        ));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"message":"a\"b\n","timestamp":"T","type":"err","process_id":7,"app_name":"api \"v2\""}"#,
                r#"{"message":"\u001b\ufffd\n","timestamp":"T","type":"err","process_id":7,"app_name":"api \"v2\""}"#
                    .replace("\\ufffd", "\u{fffd}")
                    .as_str(),
                r#"{"message":"rest","timestamp":"T","type":"err","process_id":7,"app_name":"api \"v2\""}"#,
            ]
        );
        assert_eq!(json_message(lines[0].as_bytes()), Some(b"a\"b".to_vec()));
        assert_eq!(json_message(b"not json"), None);
    }

    #[test]
    fn date_prefixes_use_pm2s_separator_and_skip_a_continued_line() {
        let format: Arc<DateFormat> = Arc::new("YYYY".parse().unwrap());
        let mut out = Vec::new();
        assert!(LineFormat::Date(format).render(&mut out, b"end\nnext\n", "2026", true, &who()));
        assert_eq!(out, b"end\n2026: next\n");
        LineFormat::Rfc3339.render(&mut out, b"x\n", "T", false, &who());
        assert_eq!(out, b"T x\n");
        assert!(!LineFormat::Plain.render(&mut out, b"x\n", "", false, &who()));
    }

    #[test]
    fn utc_fallback_matches_the_calendar() {
        // 2026-03-07T09:05:04Z, a Saturday.
        let t = utc_time(1_772_874_304, 32);
        assert_eq!(
            (
                t.year, t.month, t.day, t.weekday, t.hour, t.minute, t.second
            ),
            (2026, 3, 7, 6, 9, 5, 4)
        );
        assert_eq!(utc_time(0, 0).weekday, 4);
    }
}
