//! The IPC channel between the daemon and one run of an app that asks for
//! it (`wait_ready`, `shutdown_with_message`): PM2's protocol, over the
//! channel Node.js opens in a child from `NODE_CHANNEL_FD`, as
//! `child_process.fork` sets it up. A stream socketpair; the app's end is
//! its fd 3 ([`pmdaemon_proto::IPC_CHANNEL_FD`]), with
//! `NODE_CHANNEL_FD=3` and `NODE_CHANNEL_SERIALIZATION_MODE=json` in its
//! environment; each message is one JSON value on one line. Any program
//! can speak it: write `"ready"\n` to fd 3, read `"shutdown"\n` from it.
//!
//! What the app sends is read by a task of its own that owns the read
//! half: the JSON string "ready" becomes [`Message::Ready`] on a small
//! channel that the instance task (`instance.rs`) selects on; everything
//! else (PM2 bus messages, Node's internal ones) is ignored. A line longer
//! than [`MAX_LINE_BYTES`] or one that is not JSON is dropped with one log
//! line per run, so an app cannot grow the daemon's memory or fill its
//! log. The daemon only ever writes "shutdown", once per stop, without
//! waiting: an app that never reads its channel cannot block it.
//!
//! Both ends are created close-on-exec; the app's end loses the flag only
//! in the child, as its fd 3 (`process.rs`, `clone.rs`), and the daemon's
//! end never reaches any child. Dropping [`Ipc`] ends the reader and
//! closes the daemon's end.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// The longest message line the daemon reads; the rest of a longer one is
/// skipped. "ready" needs 8 bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What the daemon understands of what an app sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `process.send('ready')`.
    Ready,
}

/// The environment that tells the app where its channel is.
pub fn env() -> [(String, String); 2] {
    [
        (
            "NODE_CHANNEL_FD".to_string(),
            pmdaemon_proto::IPC_CHANNEL_FD.to_string(),
        ),
        (
            "NODE_CHANNEL_SERIALIZATION_MODE".to_string(),
            "json".to_string(),
        ),
    ]
}

/// A stream socketpair, both ends close-on-exec: (the app's end, the
/// daemon's end).
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    // std makes it with SOCK_CLOEXEC.
    let (app, daemon) = std::os::unix::net::UnixStream::pair()?;
    Ok((app.into(), daemon.into()))
}

/// The daemon's end of one run's channel.
pub struct Ipc {
    writer: OwnedWriteHalf,
    /// Fed by the reader task; closed when the app closes its end.
    pub messages: mpsc::Receiver<Message>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Ipc {
    fn drop(&mut self) {
        // A child of the app may hold the app's end after the run: the
        // reader ends with the run, not with the last holder.
        self.reader.abort();
    }
}

impl Ipc {
    /// Starts reading the daemon's end `fd` for the run of instance `id`
    /// of app `name`.
    pub fn start(fd: OwnedFd, name: Arc<str>, id: u32) -> io::Result<Ipc> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(std)?;
        let (read, writer) = stream.into_split();
        // Only "ready" is sent, and the first one counts: a small buffer,
        // and a full one means one is pending already.
        let (tx, messages) = mpsc::channel(2);
        let reader = tokio::spawn(read_messages(read, tx, name, id));
        Ok(Ipc {
            writer,
            messages,
            reader,
        })
    }

    /// Sends "shutdown" (PM2's `process.send('shutdown')`) without
    /// waiting: an error when the socket cannot take it now (the app never
    /// reads its channel and it is full, or it closed it).
    pub fn send_shutdown(&self) -> io::Result<()> {
        use std::os::fd::{AsFd, AsRawFd};
        const SHUTDOWN: &[u8] = b"\"shutdown\"\n";
        let fd = self.writer.as_ref().as_fd().as_raw_fd();
        // Straight to the socket, not through the runtime's write
        // readiness (unknown until something waited for it). Never
        // SIGPIPE: an app that closed its end is an error here.
        // SAFETY: send(2) on the daemon's own open socket, with a valid
        // buffer of the given length.
        let sent = unsafe {
            nix::libc::send(
                fd,
                SHUTDOWN.as_ptr().cast(),
                SHUTDOWN.len(),
                nix::libc::MSG_DONTWAIT | nix::libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(sent) {
            Err(_) => Err(io::Error::last_os_error()),
            Ok(n) if n == SHUTDOWN.len() => Ok(()),
            // Part of a line would garble the next one: the app gets the
            // stop signal instead.
            _ => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the channel took only part of the message",
            )),
        }
    }
}

/// Reads lines until the app closes its end or the receiver is gone.
async fn read_messages(
    mut read: OwnedReadHalf,
    tx: mpsc::Sender<Message>,
    name: Arc<str>,
    id: u32,
) {
    let mut lines = Lines::default();
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for item in lines.push(&chunk[..n]) {
            match item {
                Line::Message(Message::Ready) => {
                    // Full: a "ready" is pending, which says the same.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Message::Ready) {
                        return;
                    }
                }
                Line::Dropped(why) => {
                    tracing::warn!(app = %name, id, "dropped a message from the app's IPC channel: {why}; further bad messages of this run are dropped without a word");
                }
            }
        }
    }
}

/// What one line of the channel was.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Message(Message),
    /// A bad line, the first of its run (later ones are counted only).
    Dropped(String),
}

/// Splits the byte stream into lines of at most [`MAX_LINE_BYTES`] and
/// decodes them (pure, for tests).
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    /// Inside a line that went over the limit: skipped up to its newline.
    skipping: bool,
    /// A bad line was reported already in this run.
    reported: bool,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if self.skipping {
                if newline.is_some() {
                    self.skipping = false;
                }
                continue;
            }
            if self.partial.len() + part.len() > MAX_LINE_BYTES {
                self.partial.clear();
                self.skipping = newline.is_none();
                self.drop_line(&mut out, format!("longer than {MAX_LINE_BYTES} bytes"));
                continue;
            }
            self.partial.extend_from_slice(part);
            if newline.is_none() {
                break;
            }
            let line = std::mem::take(&mut self.partial);
            match decode(&line) {
                Ok(Some(message)) => out.push(Line::Message(message)),
                Ok(None) => {}
                Err(e) => self.drop_line(&mut out, format!("not JSON ({e})")),
            }
        }
        out
    }

    fn drop_line(&mut self, out: &mut Vec<Line>, why: String) {
        if !self.reported {
            self.reported = true;
            out.push(Line::Dropped(why));
        }
    }
}

/// One line: a message the daemon understands, nothing (another JSON
/// value, an empty line), or not JSON.
fn decode(line: &[u8]) -> Result<Option<Message>, serde_json::Error> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(line)?;
    Ok((value == "ready").then_some(Message::Ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_is_the_json_string_ready_on_its_own_line() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"\"rea"), []);
        assert_eq!(lines.push(b"dy\"\n"), [Line::Message(Message::Ready)]);
        // Other JSON values, PM2 bus messages, blank lines: nothing.
        assert_eq!(
            lines.push(b"{\"type\":\"process:msg\",\"data\":1}\n\n\"ready!\"\n[1]\n"),
            []
        );
        assert_eq!(
            lines.push(b"\"ready\"\n\"ready\"\n"),
            [Line::Message(Message::Ready), Line::Message(Message::Ready)]
        );
    }

    #[test]
    fn bad_lines_are_dropped_with_one_report_per_run() {
        let mut lines = Lines::default();
        let out = lines.push(b"hello\n\"ready\"\n{oops\n");
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Line::Dropped(why) if why.starts_with("not JSON")));
        assert_eq!(out[1], Line::Message(Message::Ready));
    }

    #[test]
    fn a_huge_line_is_skipped_and_the_next_one_read() {
        let mut lines = Lines::default();
        let chunk = vec![b'x'; 8 * 1024];
        let mut reports = Vec::new();
        for _ in 0..20 {
            reports.extend(lines.push(&chunk));
        }
        assert!(lines.partial.len() <= MAX_LINE_BYTES);
        assert_eq!(
            reports,
            [Line::Dropped(format!("longer than {MAX_LINE_BYTES} bytes"))]
        );
        assert_eq!(
            lines.push(b"xxx\n\"ready\"\n"),
            [Line::Message(Message::Ready)]
        );
    }

    /// The daemon's end: "shutdown" reaches the app as one JSON line, and
    /// an app that never reads does not block the sender.
    #[tokio::test]
    async fn shutdown_never_waits_for_the_app() {
        use std::io::Read;
        let (app, daemon) = pair().unwrap();
        let ipc = Ipc::start(daemon, "t".into(), 0).unwrap();
        ipc.send_shutdown().unwrap();
        let mut app = std::os::unix::net::UnixStream::from(app);
        let mut got = [0u8; 11];
        app.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\"shutdown\"\n");
        // Nobody reads any more: sends fail once the buffer is full, and
        // none of them waits.
        let failed = (0..1_000_000).find_map(|_| ipc.send_shutdown().err());
        assert!(failed.is_some());
    }
}
