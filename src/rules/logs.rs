//! Log line formats PM2 users write: `log_date_format` (dayjs format
//! tokens, as PM2 prints them before each line) and `log_type` (`json`: one
//! JSON object per line).
//!
//! [`DateFormat`] is parsed once, when an app is defined, into a list of
//! pieces; [`DateFormat::render`] then writes a timestamp from the
//! broken-down local time the caller gives it (this module reads no
//! clock). The tokens and their output are dayjs's without plugins, which
//! is what PM2 loads: the same scan (`[literal]`, `YYYY`, `YY`, `M`..`MMMM`,
//! `D`, `DD`, `d`..`dddd`, `H`, `HH`, `h`, `hh`, `a`, `A`, `m`, `mm`, `s`,
//! `ss`, `SSS`, `Z`, `ZZ`; anything else is literal text, as dayjs
//! 1.11 leaves it). Only a format with no token at all is refused: every
//! line would get the same text, never a date.

use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, invalid};

/// One piece of a parsed date format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `YYYY`: the year, at least 4 digits.
    Year4,
    /// `YY`: its last two digits.
    Year2,
    /// `M`, `MM`: month 1-12, `MM` zero-padded.
    Month {
        padded: bool,
    },
    /// `MMM` (`Jan`), `MMMM` (`January`).
    MonthName {
        long: bool,
    },
    /// `D`, `DD`: day of the month.
    Day {
        padded: bool,
    },
    /// `d`: day of the week, 0 (Sunday) to 6.
    Weekday,
    /// `dd` (`Su`), `ddd` (`Sun`), `dddd` (`Sunday`).
    WeekdayName {
        letters: u8,
    },
    /// `H`, `HH`: hour 0-23.
    Hour24 {
        padded: bool,
    },
    /// `h`, `hh`: hour 1-12.
    Hour12 {
        padded: bool,
    },
    /// `a` (`am`/`pm`), `A` (`AM`/`PM`).
    Meridiem {
        upper: bool,
    },
    Minute {
        padded: bool,
    },
    Second {
        padded: bool,
    },
    /// `SSS`: milliseconds, three digits.
    Millis,
    /// `Z` (`+01:00`), `ZZ` (`+0100`).
    Offset {
        colon: bool,
    },
}

/// A PM2 `log_date_format`, parsed: written back as given by `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    text: String,
    pieces: Vec<Piece>,
}

/// A local time broken down, as the caller's clock and zone give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    /// 0 (Sunday) to 6.
    pub weekday: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// Seconds east of UTC.
    pub offset_secs: i32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Longest format accepted: a prefix of every log line.
pub const MAX_DATE_FORMAT_LEN: usize = 200;

impl FromStr for DateFormat {
    type Err = InvalidInput;

    fn from_str(text: &str) -> Result<Self, InvalidInput> {
        if text.len() > MAX_DATE_FORMAT_LEN {
            return Err(invalid(format!(
                "{} characters is longer than the {MAX_DATE_FORMAT_LEN} a line prefix may be",
                text.len()
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{text:?} holds a control character (a newline would split every line)"
            )));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut literal = String::new();
        let mut tokens = 0;
        let mut i = 0;
        // How many times `c` repeats from `i`, at most `max`.
        let run = |i: usize, c: char, max: usize| {
            chars[i..].iter().take(max).take_while(|&&x| x == c).count()
        };
        while i < chars.len() {
            let c = chars[i];
            // `[text]` is text, as dayjs's scan takes it first (an empty
            // `[]` is no bracket: both characters stay).
            if c == '['
                && let Some(close) = chars[i + 1..].iter().position(|&x| x == ']')
                && close > 0
            {
                literal.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
                continue;
            }
            let (piece, len) = match c {
                // dayjs scans `YYYY|YY`: a lone `Y` is text.
                'Y' => match run(i, 'Y', 4) {
                    4 => (Piece::Year4, 4),
                    2 | 3 => (Piece::Year2, 2),
                    _ => {
                        literal.push(c);
                        i += 1;
                        continue;
                    }
                },
                'M' => match run(i, 'M', 4) {
                    n @ (1 | 2) => (Piece::Month { padded: n == 2 }, n),
                    n => (Piece::MonthName { long: n == 4 }, n),
                },
                'D' => {
                    let n = run(i, 'D', 2);
                    (Piece::Day { padded: n == 2 }, n)
                }
                'd' => match run(i, 'd', 4) {
                    1 => (Piece::Weekday, 1),
                    n => (Piece::WeekdayName { letters: n as u8 }, n),
                },
                'H' => {
                    let n = run(i, 'H', 2);
                    (Piece::Hour24 { padded: n == 2 }, n)
                }
                'h' => {
                    let n = run(i, 'h', 2);
                    (Piece::Hour12 { padded: n == 2 }, n)
                }
                'a' => (Piece::Meridiem { upper: false }, 1),
                'A' => (Piece::Meridiem { upper: true }, 1),
                'm' => {
                    let n = run(i, 'm', 2);
                    (Piece::Minute { padded: n == 2 }, n)
                }
                's' => {
                    let n = run(i, 's', 2);
                    (Piece::Second { padded: n == 2 }, n)
                }
                'S' if run(i, 'S', 3) == 3 => (Piece::Millis, 3),
                'Z' => {
                    let n = run(i, 'Z', 2);
                    (Piece::Offset { colon: n == 1 }, n)
                }
                _ => {
                    literal.push(c);
                    i += 1;
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            tokens += 1;
            i += len;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if tokens == 0 {
            return Err(invalid(format!(
                "{text:?} has no date token, so every line would get the same text; write \
                 tokens such as YYYY-MM-DD HH:mm:ss Z (text goes in [brackets])"
            )));
        }
        Ok(DateFormat {
            text: text.to_string(),
            pieces,
        })
    }
}

impl fmt::Display for DateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl DateFormat {
    /// Appends `at` in this format to `out`.
    pub fn render(&self, at: &LocalTime, out: &mut String) {
        use fmt::Write;
        for piece in &self.pieces {
            // Writing to a String cannot fail.
            let _ = match piece {
                Piece::Literal(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Piece::Year4 => {
                    if at.year < 0 {
                        write!(out, "-{:04}", -i64::from(at.year))
                    } else {
                        write!(out, "{:04}", at.year)
                    }
                }
                Piece::Year2 => {
                    let year = at.year.to_string();
                    out.push_str(&year[year.len().saturating_sub(2)..]);
                    Ok(())
                }
                Piece::Month { padded } => pad(out, at.month, *padded),
                Piece::MonthName { long } => {
                    let name = MONTHS[(at.month.clamp(1, 12) - 1) as usize];
                    out.push_str(if *long { name } else { &name[..3] });
                    Ok(())
                }
                Piece::Day { padded } => pad(out, at.day, *padded),
                Piece::Weekday => write!(out, "{}", at.weekday),
                Piece::WeekdayName { letters } => {
                    let name = WEEKDAYS[(at.weekday % 7) as usize];
                    out.push_str(match letters {
                        2 => &name[..2],
                        3 => &name[..3],
                        _ => name,
                    });
                    Ok(())
                }
                Piece::Hour24 { padded } => pad(out, at.hour, *padded),
                Piece::Hour12 { padded } => {
                    let h = match at.hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    pad(out, h, *padded)
                }
                Piece::Meridiem { upper } => {
                    out.push_str(match (at.hour < 12, upper) {
                        (true, false) => "am",
                        (false, false) => "pm",
                        (true, true) => "AM",
                        (false, true) => "PM",
                    });
                    Ok(())
                }
                Piece::Minute { padded } => pad(out, at.minute, *padded),
                Piece::Second { padded } => pad(out, at.second, *padded),
                Piece::Millis => write!(out, "{:03}", at.millis),
                Piece::Offset { colon } => {
                    let sign = if at.offset_secs < 0 { '-' } else { '+' };
                    let minutes = at.offset_secs.unsigned_abs() / 60;
                    let sep = if *colon { ":" } else { "" };
                    write!(out, "{sign}{:02}{sep}{:02}", minutes / 60, minutes % 60)
                }
            };
        }
    }
}

fn pad(out: &mut String, n: u32, padded: bool) -> fmt::Result {
    use fmt::Write;
    if padded {
        write!(out, "{n:02}")
    } else {
        write!(out, "{n}")
    }
}

/// How lines are written to an app's log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogType {
    /// As the app printed them (with a timestamp before each when asked).
    #[default]
    Text,
    /// One JSON object per line, as PM2's `log_type: json` writes it:
    /// `{"message","timestamp","type","process_id","app_name"}`.
    Json,
}

impl FromStr for LogType {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "json" => Ok(LogType::Json),
            "text" | "raw" => Ok(LogType::Text),
            other => Err(invalid(format!(
                "{other:?} is not a log type: `json` writes one JSON object per line; leave it \
                 out (or write `text`) for lines as the app prints them"
            ))),
        }
    }
}

impl fmt::Display for LogType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogType::Text => "text",
            LogType::Json => "json",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-07 09:05:04.032 on a Saturday, at UTC+01:00.
    const AT: LocalTime = LocalTime {
        year: 2026,
        month: 3,
        day: 7,
        weekday: 6,
        hour: 9,
        minute: 5,
        second: 4,
        millis: 32,
        offset_secs: 3600,
    };

    fn render(format: &str, at: &LocalTime) -> String {
        let f: DateFormat = format.parse().unwrap();
        let mut out = String::new();
        f.render(at, &mut out);
        out
    }

    /// The outputs dayjs 1.11 (PM2's) gives for the same instant:
    /// `dayjs('2026-03-07T09:05:04.032+01:00').format(F)` under
    /// TZ=Europe/Paris.
    #[test]
    fn tokens_render_as_dayjs_does() {
        assert_eq!(
            render("YYYY-MM-DD HH:mm:ss Z", &AT),
            "2026-03-07 09:05:04 +01:00"
        );
        assert_eq!(render("YY M D H m s SSS ZZ", &AT), "26 3 7 9 5 4 032 +0100");
        assert_eq!(
            render("MMM MMMM d dd ddd dddd", &AT),
            "Mar March 6 Sa Sat Saturday"
        );
        assert_eq!(render("h hh a A", &AT), "9 09 am AM");
        let evening = LocalTime {
            hour: 21,
            offset_secs: -(5 * 3600 + 30 * 60),
            ..AT
        };
        assert_eq!(render("h:mm A Z", &evening), "9:05 PM -05:30");
        let midnight = LocalTime { hour: 0, ..AT };
        assert_eq!(render("hh a", &midnight), "12 am");
        assert_eq!(render("YYYY-MM-DDTHH:mm:ss", &AT), "2026-03-07T09:05:04");
    }

    #[test]
    fn brackets_and_other_letters_are_text() {
        assert_eq!(render("[at] HH:mm [Z]", &AT), "at 09:05 Z");
        assert_eq!(render("HH[h]mm", &AT), "09h05");
        // Not tokens to dayjs without plugins: left as written.
        assert_eq!(render("X x Q Do HH", &AT), "X x Q 7o 09");
        assert_eq!(render("[] HH", &AT), "[] 09");
        assert_eq!(render("S SS HH", &AT), "S SS 09");
        // Longer runs split as dayjs's scan splits them.
        assert_eq!(render("MMMMM DDD", &AT), "March3 077");
        assert_eq!(render("Y-MM", &AT), "Y-03");
        assert_eq!(render("YYY", &AT), "26Y");
    }

    #[test]
    fn formats_without_a_date_are_refused_with_the_fix() {
        let err = "---".parse::<DateFormat>().unwrap_err().0;
        assert!(err.contains("no date token"), "{err}");
        assert!("[only text]".parse::<DateFormat>().is_err());
        assert!("HH\nmm".parse::<DateFormat>().is_err());
        assert!(
            "H".repeat(MAX_DATE_FORMAT_LEN + 1)
                .parse::<DateFormat>()
                .is_err()
        );
        let f: DateFormat = "YYYY-MM-DD HH:mm Z".parse().unwrap();
        assert_eq!(f.to_string(), "YYYY-MM-DD HH:mm Z");
    }

    #[test]
    fn log_types_are_json_or_text() {
        assert_eq!("json".parse(), Ok(LogType::Json));
        assert_eq!("text".parse(), Ok(LogType::Text));
        assert_eq!("raw".parse(), Ok(LogType::Text));
        assert!("xml".parse::<LogType>().unwrap_err().0.contains("json"));
    }
}
