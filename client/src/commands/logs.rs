//! `logs` (history then, with `-f`, live lines from the `StreamLogs` server
//! stream) and `flush`.
//!
//! Lines are written as raw bytes (non-UTF-8 intact), each followed by
//! `\n`, behind an `ID|NAME | ` tag unless `--raw`; `--json` writes one
//! JSON object per line instead, with PM2's keys (`message`, `timestamp`,
//! `type`, `process_id`, `app_name`). Output is flushed after
//! every message of the stream, so `-f` is live; a closed stdout ends the
//! command quietly with exit 0 (see `term::StdoutClosed`).

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use pmdaemon_proto::v1::{FlushLogsRequest, LogLine, LogStream, StreamLogsRequest};

use super::{Ctx, RpcResultExt};
use crate::cli::{FlushArgs, LogsArgs};
use crate::term::{self, Colours, Style};

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let stream = if args.out {
        LogStream::Stdout
    } else if args.err {
        LogStream::Stderr
    } else {
        LogStream::Unspecified
    };
    let request = StreamLogsRequest {
        target: args
            .target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        lines: args.lines,
        follow: args.follow,
        stream: stream.into(),
        after_seq: None,
    };
    let mut responses = client.stream_logs(request).await.rpc()?;
    let format = LineFormat {
        tag: !args.raw,
        time: args.time,
        json: args.json,
        colours: ctx.colours,
    };
    let mut out = term::Stdout::new();
    let mut buf = Vec::new();
    while let Some(response) = responses
        .message()
        .await
        .map_err(super::DaemonError::from)?
    {
        if response.missed_lines > 0 {
            // Flush first so the notice lands where the gap is.
            out.flush()?;
            eprintln!(
                "[pmd] missed {} lines (reader too slow)",
                response.missed_lines
            );
        }
        for line in &response.lines {
            buf.clear();
            format.write(&mut buf, line);
            out.write_all(&buf)?;
        }
        out.flush()?;
    }
    if args.follow {
        eprintln!("[pmd] the daemon ended the log stream (was it stopped?)");
    }
    Ok(())
}

/// How each log line is decorated (`pmd logs`, and `pmdaemond run`, which
/// prints its apps' lines the same way).
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    /// `ID|NAME | ` before each line.
    pub tag: bool,
    /// The time the daemon read the line (live lines only).
    pub time: bool,
    /// A JSON object per line (PM2's `logs --json`) instead of text.
    pub json: bool,
    pub colours: Colours,
}

/// One line of `logs --json`, PM2's shape (`lib/API/Log.js` jsonStream):
/// `timestamp` is when the daemon read the line (RFC 3339), null for
/// history read back from a file; `message` is the line as UTF-8 (invalid
/// bytes replaced).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    message: std::borrow::Cow<'a, str>,
    timestamp: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    process_id: u32,
    app_name: &'a str,
}

impl LineFormat {
    /// Appends `line`, decorated, and its newline to `buf`.
    pub fn write(&self, buf: &mut Vec<u8>, line: &LogLine) {
        if self.json {
            let at = (line.timestamp_ms > 0).then(|| {
                let at = UNIX_EPOCH + Duration::from_millis(line.timestamp_ms.unsigned_abs());
                humantime::format_rfc3339_millis(at).to_string()
            });
            let json = JsonLine {
                message: String::from_utf8_lossy(&line.data),
                timestamp: at,
                kind: if line.stream() == LogStream::Stderr {
                    "err"
                } else {
                    "out"
                },
                process_id: line.id,
                app_name: &line.name,
            };
            // Serializing plain strings and numbers cannot fail.
            let _ = serde_json::to_writer(&mut *buf, &json);
            buf.push(b'\n');
            return;
        }
        if self.time && line.timestamp_ms > 0 {
            let at = UNIX_EPOCH + Duration::from_millis(line.timestamp_ms.unsigned_abs());
            let stamp = humantime::format_rfc3339_millis(at).to_string();
            buf.extend_from_slice(self.colours.paint(&stamp, Style::Dim).as_bytes());
            buf.push(b' ');
        }
        if self.tag {
            let tag = format!("{}|{} |", line.id, line.name);
            let style = if line.stream() == LogStream::Stderr {
                Style::Red
            } else {
                Style::Cyan
            };
            buf.extend_from_slice(self.colours.paint(&tag, style).as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&line.data);
        buf.push(b'\n');
    }
}

pub async fn flush(ctx: &Ctx, args: FlushArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = FlushLogsRequest {
        target: args
            .target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    };
    let files = client.flush_logs(request).await.rpc()?.files;
    let text = if files.is_empty() {
        "no log files to flush\n".to_string()
    } else {
        files.iter().map(|f| format!("flushed {f}\n")).collect()
    };
    term::print(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: LogStream, data: &[u8], timestamp_ms: i64) -> LogLine {
        LogLine {
            id: 0,
            name: "api".into(),
            stream: stream.into(),
            data: data.to_vec(),
            timestamp_ms,
            ..Default::default()
        }
    }

    fn render(format: &LineFormat, l: &LogLine) -> Vec<u8> {
        let mut buf = Vec::new();
        format.write(&mut buf, l);
        buf
    }

    #[test]
    fn lines_are_tagged_and_bytes_kept() {
        let f = LineFormat {
            tag: true,
            time: false,
            json: false,
            colours: Colours::OFF,
        };
        assert_eq!(
            render(&f, &line(LogStream::Stdout, b"caf\xe9", 0)),
            b"0|api | caf\xe9\n"
        );
        let raw = LineFormat { tag: false, ..f };
        assert_eq!(render(&raw, &line(LogStream::Stdout, b"x", 0)), b"x\n");
    }

    #[test]
    fn time_only_for_live_lines() {
        let f = LineFormat {
            tag: true,
            time: true,
            json: false,
            colours: Colours::OFF,
        };
        assert_eq!(
            render(&f, &line(LogStream::Stdout, b"hi", 1_700_000_000_123)),
            b"2023-11-14T22:13:20.123Z 0|api | hi\n"
        );
        assert_eq!(
            render(&f, &line(LogStream::Stdout, b"old", 0)),
            b"0|api | old\n"
        );
    }

    /// PM2's keys, one object per line; bytes that are not UTF-8 do not
    /// break the JSON.
    #[test]
    fn json_lines_have_pm2_keys() {
        let f = LineFormat {
            tag: true,
            time: false,
            json: true,
            colours: Colours { enabled: true },
        };
        let out = render(
            &f,
            &line(LogStream::Stderr, b"bad \xff \"q\"", 1_700_000_000_123),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "message": "bad \u{fffd} \"q\"",
                "timestamp": "2023-11-14T22:13:20.123Z",
                "type": "err",
                "process_id": 0,
                "app_name": "api",
            })
        );
        let history = render(&f, &line(LogStream::Stdout, b"old", 0));
        let v: serde_json::Value = serde_json::from_slice(&history).unwrap();
        assert_eq!(v["timestamp"], serde_json::Value::Null);
        assert_eq!(v["type"], "out");
    }

    #[test]
    fn stderr_tag_is_red_on_a_terminal() {
        let f = LineFormat {
            tag: true,
            time: false,
            json: false,
            colours: Colours { enabled: true },
        };
        let out = render(&f, &line(LogStream::Stderr, b"boom", 0));
        assert!(out.starts_with(b"\x1b[31m0|api |\x1b[0m boom"));
    }
}
