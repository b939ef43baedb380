//! The terminal side of `pmd`: whether to colour, the ANSI styles, the
//! stdout writer that turns a closed pipe into a quiet success, and the
//! spinner shown during long waits.
//!
//! Colour goes to stdout only when it is a terminal, `NO_COLOR` is unset or
//! empty and `--no-color` was not given. Spinners draw on stderr, only when
//! stderr is a terminal, and only once a wait has lasted [`SPINNER_DELAY`],
//! so quick commands never flash one and pipes and CI never see one.

use std::borrow::Cow;
use std::future::Future;
use std::io::{self, IsTerminal, Write};
use std::pin::pin;
use std::time::Duration;

/// Marker carried inside the `io::Error` that [`Stdout`] returns when the
/// reader of stdout went away (EPIPE). `main` treats it as success: `pmd
/// logs -f | head -3` exits 0. Only stdout is tagged, so a broken pipe on
/// the daemon's socket is still reported as the failure it is.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether an error (anywhere in its chain) is a closed stdout.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<StdoutClosed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Buffered, locked stdout whose BrokenPipe errors carry [`StdoutClosed`].
/// Callers flush when a batch of output is complete.
pub struct Stdout {
    inner: io::BufWriter<io::StdoutLock<'static>>,
}

impl Stdout {
    pub fn new() -> Self {
        Stdout {
            inner: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Self::new()
    }
}

fn tag_broken_pipe(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        err
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(tag_broken_pipe)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).map_err(tag_broken_pipe)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(tag_broken_pipe)
    }
}

/// Writes `text` to stdout at once and flushes.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = Stdout::new();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `NO_COLOR` asks for no colour (set and non-empty).
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colours {
    pub enabled: bool,
}

/// SGR codes used by `pmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "31",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Cyan => "36",
        }
    }
}

impl Colours {
    pub const OFF: Colours = Colours { enabled: false };

    /// Colour for stdout, decided once per run.
    pub fn for_stdout(no_color_flag: bool) -> Colours {
        Colours {
            enabled: !no_color_flag && !no_color_env() && io::stdout().is_terminal(),
        }
    }

    pub fn paint<'a>(&self, text: &'a str, style: Style) -> Cow<'a, str> {
        if self.enabled {
            Cow::Owned(format!("\x1b[{}m{text}\x1b[0m", style.sgr()))
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// How long a wait runs before a spinner appears.
pub const SPINNER_DELAY: Duration = Duration::from_millis(150);

/// Awaits `fut`, showing a spinner with `message` on stderr if it takes
/// longer than [`SPINNER_DELAY`] and stderr is a terminal.
pub async fn with_spinner<F: Future>(message: impl Into<Cow<'static, str>>, fut: F) -> F::Output {
    if !io::stderr().is_terminal() {
        return fut.await;
    }
    let mut fut = pin!(fut);
    tokio::select! {
        out = &mut fut => return out,
        () = tokio::time::sleep(SPINNER_DELAY) => {}
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    let out = fut.await;
    bar.finish_and_clear();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn closed_stdout_is_recognised_through_context() {
        let err = anyhow::Error::from(tag_broken_pipe(io::Error::from(io::ErrorKind::BrokenPipe)))
            .context("writing the list");
        assert!(is_stdout_closed(&err));
    }

    #[test]
    fn other_broken_pipes_are_failures() {
        let err: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("talking to the daemon");
        assert!(!is_stdout_closed(&err.unwrap_err()));
    }

    #[test]
    fn paint_only_when_enabled() {
        assert_eq!(Colours::OFF.paint("x", Style::Red), "x");
        let on = Colours { enabled: true };
        assert_eq!(on.paint("x", Style::Red), "\x1b[31mx\x1b[0m");
    }
}
