//! Cron schedules (PM2's `cron_restart`): which expressions are accepted
//! and when one fires next ([`CronSchedule`]).
//!
//! PM2 (5.3 and later) parses `cron_restart` with the JavaScript library
//! croner; this module uses its Rust twin, the `croner` crate, set up the
//! same way: five fields (minute hour day-of-month month day-of-week) or
//! six with a leading seconds field, lists, ranges, steps, month and
//! weekday names (`JAN`, `MON`, any case), `@yearly`, `@monthly`,
//! `@weekly`, `@daily`, `@hourly`, croner's `L`, `W`, `#` and `+`, and a
//! day-of-month and a day-of-week that are both restricted meaning either
//! (Vixie cron's OR). A seventh (year) field is refused: croner in PM2 has
//! none.
//!
//! Time zones and daylight saving are croner's documented rules (see
//! [`CronSchedule::next_after`]); this module reads no clock and no zone:
//! the caller hands in the time, in the zone it means (the daemon: its
//! local time zone).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::{InvalidInput, invalid};

/// A parsed cron expression, written back as given (trimmed) by
/// `Display`. Serialized as that text, so `state.json` stores
/// `"0 3 * * *"`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronSchedule {}

/// What each field may hold, for the refusal.
const SHAPE: &str = "write 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"), 6 with a leading seconds field, or a macro such as @daily";

impl CronSchedule {
    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` at which the schedule fires,
    /// in `after`'s zone; None when there is none before the year 5000
    /// (`0 0 30 2 *`: February has no 30th).
    ///
    /// Daylight saving (croner's rules, those of Vixie cron): a time that
    /// a spring-forward gap skips runs at the first time after the gap
    /// when the expression names fixed seconds, minute and hour (`30 2 * *
    /// *` runs at 03:00 that day), and is skipped when it uses a wildcard
    /// or a step there (`*/15 * * * *`); in a repeated (fall-back) hour a
    /// fixed time runs once, at its first pass, and a wildcard or step
    /// runs in both passes, as the wall clock shows it twice. Pass the
    /// time the previous call returned to move on from it.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(after, false).ok()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CronSchedule {
    type Err = InvalidInput;

    /// Parses an expression as PM2's croner does; surrounding whitespace
    /// is ignored. Empty is refused: a caller that takes "no schedule"
    /// checks for it first.
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let text = s.trim();
        if text.is_empty() {
            return Err(invalid(format!("the cron expression is empty: {SHAPE}")));
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!(
                "{text:?} has {fields} field{}: {SHAPE}",
                if fields == 1 { "" } else { "s" }
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text).map_err(|e| {
            invalid(format!(
                "{text:?} is not a cron expression ({}): {SHAPE}",
                reason(&e)
            ))
        })?;
        // An expression that can never fire (`0 0 31 2 *`) is a mistake,
        // not a schedule.
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let probe = chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(epoch);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(invalid(format!(
                "{text:?} never fires (no such date): {SHAPE}"
            )));
        }
        Ok(CronSchedule {
            text: text.to_string(),
            cron,
        })
    }
}

/// croner's reason, without its type prefixes and trailing dot.
fn reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let text = match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    text.trim_end_matches('.').to_string()
}

impl TryFrom<String> for CronSchedule {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, InvalidInput> {
        s.parse()
    }
}

impl From<CronSchedule> for String {
    fn from(schedule: CronSchedule) -> String {
        schedule.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn next(expr: &str, after: &str) -> String {
        let schedule: CronSchedule = expr.parse().unwrap();
        schedule.next_after(&at(after)).unwrap().to_rfc3339()
    }

    #[test]
    fn five_fields_fire_on_the_minute() {
        assert_eq!(
            next("0 3 * * *", "2026-12-05T17:20:00+01:00"),
            "2026-12-06T03:00:00+01:00"
        );
        // Strictly after: at 03:00 itself the next one is tomorrow's.
        assert_eq!(
            next("0 3 * * *", "2026-12-06T03:00:00+01:00"),
            "2026-12-07T03:00:00+01:00"
        );
        assert_eq!(
            next("*/15 9-17 * * MON-FRI", "2026-12-05T17:20:00+00:00"),
            "2026-12-07T09:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan,Jul *", "2026-12-05T00:00:00+00:00"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@daily", "2026-12-05T17:20:00+00:00"),
            "2026-12-06T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2026-12-05T17:20:00+00:00"),
            "2026-12-05T18:00:00+00:00"
        );
    }

    /// PM2's croner takes a leading seconds field: a PM2 file with six
    /// fields works.
    #[test]
    fn six_fields_have_seconds() {
        assert_eq!(
            next("*/2 * * * * *", "2026-12-05T17:20:00.500+00:00"),
            "2026-12-05T17:20:02+00:00"
        );
        assert_eq!(
            next("30 0 3 * * *", "2026-12-05T17:20:00+00:00"),
            "2026-12-06T03:00:30+00:00"
        );
    }

    #[test]
    fn written_back_as_given_and_serialized_as_text() {
        let schedule: CronSchedule = "  0 3 * * MON ".parse().unwrap();
        assert_eq!(schedule.to_string(), "0 3 * * MON");
        let json = serde_json::to_string(&schedule).unwrap();
        assert_eq!(json, r#""0 3 * * MON""#);
        assert_eq!(
            serde_json::from_str::<CronSchedule>(&json).unwrap(),
            schedule
        );
        assert!(serde_json::from_str::<CronSchedule>(r#""61 * * * *""#).is_err());
    }

    #[test]
    fn mistakes_are_refused_with_the_shape() {
        let refused = |expr: &str| expr.parse::<CronSchedule>().unwrap_err().0;
        assert!(refused("").starts_with("the cron expression is empty: write 5 fields"));
        assert_eq!(
            refused("0 3 * *"),
            "\"0 3 * *\" has 4 fields: write 5 fields (minute hour day-of-month month \
             day-of-week, e.g. \"0 3 * * *\"), 6 with a leading seconds field, or a macro \
             such as @daily"
        );
        assert!(refused("0 0 3 * * * 2027").starts_with("\"0 0 3 * * * 2027\" has 7 fields"));
        assert!(refused("daily").starts_with("\"daily\" has 1 field: "));
        for bad in [
            "61 * * * *",
            "0 25 * * *",
            "0 3 32 * *",
            "0 3 * 13 *",
            "0 3 * * FUNDAY",
            "a b c d e",
            "@often",
            "*/0 * * * *",
        ] {
            let why = refused(bad);
            assert!(
                why.starts_with(&format!("{bad:?} is not a cron expression (")),
                "{bad}: {why}"
            );
            assert!(why.ends_with(SHAPE), "{bad}: {why}");
        }
        assert!(refused("0 0 31 2 *").contains("never fires"));
    }

    #[test]
    fn named_refusal_puts_the_field_first() {
        let e = "0 3 * *"
            .parse::<CronSchedule>()
            .unwrap_err()
            .named("--cron-restart");
        assert!(e.0.starts_with("--cron-restart: \"0 3 * *\" has 4 fields"));
    }

    /// Europe/Berlin, 2026: clocks go 02:00 -> 03:00 on March 29 and
    /// 03:00 -> 02:00 on October 25.
    #[test]
    fn daylight_saving_gap_and_repeat() {
        use chrono_tz::Europe::Berlin;
        let berlin = |y, m, d, h, min| Berlin.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        let daily: CronSchedule = "30 2 * * *".parse().unwrap();
        // 02:30 does not exist on March 29: a fixed time runs right after
        // the gap, that day.
        let first = daily.next_after(&berlin(2026, 3, 29, 0, 0)).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-03-29T03:00:00+02:00");
        assert_eq!(
            daily.next_after(&first).unwrap().to_rfc3339(),
            "2026-03-30T02:30:00+02:00"
        );
        // 02:30 comes twice on October 25: it fires once.
        let first = daily.next_after(&berlin(2026, 10, 25, 0, 0)).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-10-25T02:30:00+02:00");
        assert_eq!(
            daily.next_after(&first).unwrap().to_rfc3339(),
            "2026-10-26T02:30:00+01:00"
        );
        // A step is skipped in the gap and runs in both passes of the
        // repeated hour, as the wall clock shows them.
        let quarterly: CronSchedule = "*/30 2 * * *".parse().unwrap();
        let runs: Vec<String> =
            std::iter::successors(quarterly.next_after(&berlin(2026, 10, 25, 0, 0)), |t| {
                quarterly.next_after(t)
            })
            .take(5)
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            runs,
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-26T02:00:00+01:00",
            ]
        );
        let spring = quarterly.next_after(&berlin(2026, 3, 29, 0, 0)).unwrap();
        assert_eq!(spring.to_rfc3339(), "2026-03-30T02:00:00+02:00");
    }

    #[test]
    fn utc_is_a_zone_too() {
        let schedule: CronSchedule = "0 3 * * *".parse().unwrap();
        let after = Utc.with_ymd_and_hms(2026, 12, 5, 17, 20, 0).unwrap();
        assert_eq!(
            schedule.next_after(&after).unwrap().to_rfc3339(),
            "2026-12-06T03:00:00+00:00"
        );
    }
}
