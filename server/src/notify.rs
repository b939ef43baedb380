//! systemd's readiness protocol (sd_notify(3)) for a daemon run as a
//! `Type=notify` service: `READY=1` once the socket serves, `STOPPING=1`
//! when a graceful shutdown begins.
//!
//! The service manager names its socket in `NOTIFY_SOCKET`: a path, or an
//! abstract address written with a leading `@`. Each state is one datagram
//! of `KEY=VALUE` lines, sent from an unbound Unix datagram socket. Without
//! `NOTIFY_SOCKET` (a daemon that `pmd` started, or one run by hand) there
//! is no [`Notifier`] and nothing is sent.
//!
//! [`Notifier::take_from_env`] also removes the variable from the daemon's
//! own environment, which is the base of every app's (the spawn, the health
//! scripts and GetProcessEnv all read it): an app must not be able to speak
//! for the daemon (`NotifyAccess=main` in the unit says the same to
//! systemd). `pmd` leaves it out of the environment it captures
//! (`pmdaemon_proto::is_captured`), so a `pmd start` run inside another
//! notify service does not hand that service's socket to an app either.
//!
//! Talks to: the service manager's socket, nothing else. A failed send is
//! logged and otherwise ignored: systemd then times the start out, which
//! is its business; the daemon serves either way.

use std::ffi::OsString;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd names its notification socket in.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Where the service manager listens for this daemon's states.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// `NOTIFY_SOCKET` as given: a path, or `@name` for an abstract socket.
    socket: OsString,
}

/// A state this daemon reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The socket answers: clients may call.
    Ready,
    /// A graceful shutdown began: the apps are being stopped.
    Stopping,
}

impl State {
    fn datagram(self) -> String {
        match self {
            State::Ready => format!("READY=1\nMAINPID={}\n", std::process::id()),
            State::Stopping => "STOPPING=1\n".to_string(),
        }
    }
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if it is set and not empty, and
    /// the variable removed from this process's environment.
    ///
    /// # Safety
    ///
    /// Changes the process environment: call it before any other thread
    /// exists (first thing in `main`, before the runtime or tracing start).
    pub unsafe fn take_from_env() -> Option<Notifier> {
        let socket = std::env::var_os(NOTIFY_SOCKET_ENV)?;
        // SAFETY: the caller promises that no other thread runs yet, so
        // nothing reads the environment while it changes.
        unsafe { std::env::remove_var(NOTIFY_SOCKET_ENV) };
        (!socket.is_empty()).then_some(Notifier { socket })
    }

    /// A notifier for `socket` (a path, or `@name`), for tests.
    pub fn new(socket: impl Into<OsString>) -> Notifier {
        Notifier {
            socket: socket.into(),
        }
    }

    /// Sends `state`; a failure is logged, never fatal.
    pub fn notify(&self, state: State) {
        if let Err(e) = self.send(&state.datagram()) {
            tracing::warn!(
                socket = ?self.socket,
                error = %e,
                "cannot tell the service manager {state:?}"
            );
        }
    }

    fn send(&self, message: &str) -> std::io::Result<()> {
        let address = self.address()?;
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(message.as_bytes(), &address)?;
        if sent != message.len() {
            return Err(std::io::Error::other("the datagram was cut short"));
        }
        Ok(())
    }

    fn address(&self) -> std::io::Result<SocketAddr> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.socket.as_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None if bytes.starts_with(b"/") => SocketAddr::from_pathname(&self.socket),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor @abstract",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.as_os_str());
        notifier.notify(State::Ready);
        notifier.notify(State::Stopping);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let ready = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        assert!(
            ready.contains(&format!("MAINPID={}\n", std::process::id())),
            "{ready}"
        );
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn states_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pmdaemond-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::new(format!("@{name}")).notify(State::Stopping);
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn a_relative_socket_is_refused() {
        let err = Notifier::new("notify.sock").send("READY=1\n").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
