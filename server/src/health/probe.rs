//! One run of one probe against one instance: an HTTP/1.1 GET written by
//! hand over a `TcpStream` (status line only, a few KiB read at most), a
//! TCP connect, or `sh -c` in its own process group. Each is bounded by the
//! check's timeout; a failure comes back as a short reason a person can
//! read in `pmd describe`.
//!
//! A script probe is the only process this module starts, through
//! `supervisor::process::spawn_shell` (the one place that forks). Its process
//! group is SIGKILLed when it times out, when it exits (background
//! children it left behind), and when the probe's future is dropped (the
//! prober stopped); its leader is always reaped (by us, or by tokio's
//! orphan reaper after a drop).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{PORT_PLACEHOLDER, Probe, human};
use crate::supervisor::process;
use pmdaemon_proto::health::{parse_http_url, parse_tcp_target};

/// Most bytes of an HTTP response read to find the status line.
const MAX_STATUS_LINE_BYTES: usize = 4 << 10;
/// Bytes of a script's stdout and of its stderr kept for the failure
/// message (the end of the output, where the reason usually is).
const SCRIPT_TAIL_BYTES: usize = 1 << 10;
/// Longest output line quoted in a failure message.
const MAX_REASON_LINE_BYTES: usize = 200;
/// After a script exits, how long its pipes may stay open (held by a
/// process that left its group) before the output read so far is used.
const PIPE_DRAIN_GRACE: Duration = Duration::from_millis(250);
/// How long to wait for a SIGKILLed script leader to be reaped before
/// leaving it to tokio's orphan reaper.
const REAP_WAIT: Duration = Duration::from_secs(1);

/// Runs `probe` (already [resolved](super::resolve)) once, bounded by
/// `timeout`. `Ok(())` is healthy; `Err` is a short reason such as
/// `HTTP 503 from http://127.0.0.1:3000/health`, `timed out after 2s` or
/// `script exited with code 1: db unreachable`. `env` (added to the
/// daemon's environment) and `cwd` are used by script probes only.
pub async fn probe_once(
    probe: &Probe,
    timeout: Duration,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<(), String> {
    match probe {
        Probe::Http {
            url,
            expected_status,
        } => bounded(timeout, http_get(url, *expected_status)).await,
        Probe::Tcp { target } => bounded(timeout, tcp_connect(target)).await,
        // A script bounds itself: at its deadline the group must be killed.
        Probe::Script { command } => run_script(command, timeout, env, cwd).await,
    }
}

async fn bounded(
    timeout: Duration,
    probe: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}", human(timeout))))
}

fn unresolved(text: &str) -> Result<(), String> {
    if text.contains(PORT_PLACEHOLDER) {
        return Err(format!(
            "{text:?} still contains {PORT_PLACEHOLDER}: the check was not resolved for an instance"
        ));
    }
    Ok(())
}

/// `GET url`: healthy on 2xx, or exactly on `expected`.
async fn http_get(url: &str, expected: Option<u16>) -> Result<(), String> {
    unresolved(url)?;
    let target = parse_http_url(url, false).map_err(|e| format!("bad URL {e}"))?;
    let mut stream = connect(target.host, target.port).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pmdaemon-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request to {url}: {}", io_reason(&e)))?;
    let status = read_status(&mut stream)
        .await
        .map_err(|e| format!("{e} from {url}"))?;
    let healthy = match expected {
        Some(expected) => status == expected,
        None => (200..300).contains(&status),
    };
    match (healthy, expected) {
        (true, _) => Ok(()),
        (false, Some(expected)) => Err(format!("HTTP {status} from {url} (expected {expected})")),
        (false, None) => Err(format!("HTTP {status} from {url}")),
    }
    // Dropping the stream closes it; the body is never read.
}

/// Reads up to the end of the status line and returns its code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let line_end = loop {
        if let Some(end) = head.iter().position(|&b| b == b'\n') {
            break end;
        }
        if head.len() >= MAX_STATUS_LINE_BYTES {
            return Err(format!(
                "no HTTP status line in the first {MAX_STATUS_LINE_BYTES} bytes"
            ));
        }
        let want = chunk.len().min(MAX_STATUS_LINE_BYTES - head.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) if head.is_empty() => {
                return Err("connection closed without an HTTP response".into());
            }
            Ok(0) => break head.len(),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("cannot read the response ({})", io_reason(&e))),
        }
    };
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut words = line.split_whitespace();
    let version = words.next().unwrap_or("");
    let code = words.next().unwrap_or("");
    let three_digits = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    match code.parse::<u16>() {
        Ok(code) if version.starts_with("HTTP/") && three_digits => Ok(code),
        _ => Err(format!(
            "not an HTTP response ({:?})",
            truncate(line.trim_end(), 60)
        )),
    }
}

/// Healthy when `target` accepts a connection.
async fn tcp_connect(target: &str) -> Result<(), String> {
    unresolved(target)?;
    let (host, port) = parse_tcp_target(target, false).map_err(|e| format!("bad target {e}"))?;
    connect(host, port).await.map(drop)
}

/// Connects to the first address of `host` that accepts, in resolver
/// order (`localhost` may be `::1` then `127.0.0.1`; an app listening on
/// one of them only is found either way).
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {}", io_reason(&e)))?
        .collect();
    let mut last_error = format!("{host} has no address");
    // Name the host as the user wrote it, and the address that was tried.
    let named = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_err();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) if named => {
                last_error = format!(
                    "cannot connect to {host}:{port} ({addr}): {}",
                    io_reason(&e)
                );
            }
            Err(e) => last_error = format!("cannot connect to {addr}: {}", io_reason(&e)),
        }
    }
    Err(last_error)
}

/// An io error without its `(os error N)` suffix, lowercase:
/// `connection refused`.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// SIGKILLs a process group when dropped, unless disarmed: a script
/// probe's group must not outlive the probe, even when its future is
/// dropped half-way (the prober was stopped).
struct KillGroupOnDrop(Option<u32>);

impl KillGroupOnDrop {
    /// Kills the group now; the guard stays armed.
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            kill_group(pgid);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: u32) {
    process::signal_group(pgid, Signal::SIGKILL);
}

/// The last `SCRIPT_TAIL_BYTES` of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > SCRIPT_TAIL_BYTES {
            let excess = self.0.len() - SCRIPT_TAIL_BYTES;
            self.0.drain(..excess);
        }
    }

    /// The last non-blank line, truncated for a message.
    fn last_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.0);
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| truncate(l, MAX_REASON_LINE_BYTES))
    }
}

/// `text` cut to at most `max` bytes on a character boundary, `…` marking
/// the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Reads one chunk from `pipe` into `buf`: the byte count, 0 at end of
/// stream or on error. Never completes for a pipe already closed (`None`).
async fn read_chunk<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> usize {
    match pipe {
        Some(pipe) => pipe.read(buf).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

/// `sh -c command` in its own process group, stdin from /dev/null, the
/// tails of stdout and stderr kept for the message.
async fn run_script(
    command: &str,
    timeout: Duration,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    // Forked through the supervisor's OS boundary, the one place that
    // spawns and signals processes.
    let mut child = process::spawn_shell(command, env, cwd).map_err(|e| {
        format!(
            "cannot run the script in {}: {}",
            cwd.display(),
            io_reason(&e)
        )
    })?;
    // Declared after `child`, so dropped before it: the group dies first.
    let mut group = KillGroupOnDrop(child.id());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out, mut err) = (Tail::default(), Tail::default());
    let (mut out_buf, mut err_buf) = ([0u8; 512], [0u8; 512]);
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    // Until exit: the timeout; after: the grace for the pipes to close.
    let mut wake_at = deadline;
    // Reading and waiting together: a script that fills a pipe must not
    // block on it.
    while status.is_none() || stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = read_chunk(&mut stdout, &mut out_buf), if stdout.is_some() => match n {
                0 => stdout = None,
                n => out.push(&out_buf[..n]),
            },
            n = read_chunk(&mut stderr, &mut err_buf), if stderr.is_some() => match n {
                0 => stderr = None,
                n => err.push(&err_buf[..n]),
            },
            exit = child.wait(), if status.is_none() => {
                // Whatever it left running in the background goes too.
                // The group id cannot be reused while a member lives; with
                // none left, killpg finds nothing.
                group.kill();
                group.disarm();
                status = Some(exit);
                wake_at = Instant::now() + PIPE_DRAIN_GRACE;
            },
            () = tokio::time::sleep_until(wake_at) => break,
        }
    }
    let tail = err.last_line().or_else(|| out.last_line());
    let with_tail = |reason: String| match &tail {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    };
    let Some(status) = status else {
        group.kill();
        group.disarm();
        // SIGKILLed: reaped at once unless stuck in the kernel; then
        // tokio's orphan reaper gets it when `child` drops.
        let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
        return Err(with_tail(format!("timed out after {}", human(timeout))));
    };
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(with_tail(describe_exit(status))),
        Err(e) => Err(format!("cannot wait for the script: {}", io_reason(&e))),
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("script exited with code {code}"),
        (None, Some(signo)) => {
            let name = Signal::try_from(signo)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signo}"));
            format!("script was killed by {name}")
        }
        (None, None) => format!("script ended with {status}"),
    }
}
