//! [`EventStream`]: a background `pmd events -o json` whose lines arrive
//! as JSON values, started by [`TestDaemon::events`] only once it is seen
//! to be live, so that no event of the test is missed.
//!
//! Talks to: the `pmd events` child it spawns (SIGKILLed on drop) and, to
//! prove the stream live, the daemon through `pmd start`/`pmd delete`.

use std::fs;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::command::spawn_retrying_busy;
use crate::daemon::TestDaemon;
use crate::wait::{Timeout, WAIT};

/// The app [`TestDaemon::events`] starts and deletes to see that its event
/// stream is live; tests filter events by their own app names.
pub const EVENTS_SYNC_APP: &str = "events-sync";

impl TestDaemon {
    /// Starts `pmd events -o json` in the background and returns once its
    /// stream is live: it starts and deletes [`EVENTS_SYNC_APP`] until an
    /// event of that app comes through (the daemon replays nothing, and an
    /// event published before the stream is subscribed is never seen).
    pub fn events(&self) -> EventStream {
        let mut stream = EventStream::spawn(self);
        let deadline = WAIT.deadline();
        loop {
            self.pmd_ok(&[
                "start",
                "sleep",
                "--name",
                EVENTS_SYNC_APP,
                "--no-autorestart",
                "--",
                "100000",
            ]);
            let live = stream
                .next_matching(WAIT.div(60), |e| e["name"] == EVENTS_SYNC_APP)
                .is_some();
            self.pmd_ok(&["delete", EVENTS_SYNC_APP]);
            if live {
                return stream;
            }
            assert!(
                Instant::now() < deadline,
                "pmd events showed no event within {WAIT:?}; stderr: {}",
                stream.stderr()
            );
        }
    }
}

/// A running `pmd events -o json`. A reader thread parses each line of its
/// stdout and sends it here; the process is SIGKILLed on drop.
pub struct EventStream {
    child: Child,
    /// Fed by the reader thread, which ends at EOF (when `child` is gone).
    lines: mpsc::Receiver<Result<Value, String>>,
    /// Every event received so far, in order (for messages and filters).
    seen: Vec<Value>,
    /// `pmd events`' stderr (a file, so that it can never block it).
    stderr: tempfile::NamedTempFile,
}

impl EventStream {
    fn spawn(d: &TestDaemon) -> EventStream {
        let stderr = tempfile::NamedTempFile::new().expect("temp file for stderr");
        let mut child = spawn_retrying_busy(
            d.pmd_command(&["events", "-o", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().expect("reopen stderr file")),
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let parsed =
                    serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line:?}"));
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        EventStream {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next event, waiting up to `timeout`; `None` when none came (or
    /// the stream ended). Panics on a line that is not JSON.
    fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(event)) => {
                self.seen.push(event.clone());
                Some(event)
            }
            Ok(Err(bad)) => panic!("pmd events -o json printed a line that is {bad}"),
            Err(_) => None,
        }
    }

    /// The next event that satisfies `pred` within `timeout` (the others
    /// are kept in [`Self::seen`]).
    pub fn next_matching(
        &mut self,
        timeout: Timeout,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = timeout.deadline();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next_within(left)?;
            if pred(&event) {
                return Some(event);
            }
        }
    }

    /// Waits up to [`WAIT`] for an event that satisfies `pred`; panics
    /// naming `what` and listing the events seen.
    pub fn wait_event(&mut self, what: &str, pred: impl FnMut(&Value) -> bool) -> Value {
        self.next_matching(WAIT, pred).unwrap_or_else(|| {
            panic!(
                "timed out after {WAIT:?} waiting for the event: {what}; events seen:\n{}\nstderr: {}",
                self.seen_lines(),
                self.stderr()
            )
        })
    }

    /// Every event received so far.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// The events received so far about app `name`.
    pub fn seen_of(&self, name: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|e| e["name"] == name)
            .cloned()
            .collect()
    }

    /// The events received so far, one a line, for messages.
    pub fn seen_lines(&self) -> String {
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What `pmd events` wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kind` of a `pmd events -o json` event.
pub fn kind_of(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or("")
}
