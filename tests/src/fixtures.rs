//! Fixtures: the apps the tests run that are more than a line of shell
//! ([`HTTP_SERVER`], [`HEALTH_SERVER`], run by this machine's python3),
//! talking HTTP to them, the interpreters they need, and the wall clock
//! they stamp times with.
//!
//! Talks to: python3 and node on `PATH` (to find them), and apps over
//! TCP on 127.0.0.1.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::output::describe_output;
use crate::wait::{WAIT, wait_for_value};

/// The python3 interpreter itself (`sys.executable`), not a wrapper such as
/// a pyenv shim, so that apps start fast and their pid is python's. Panics
/// when python3 is not on PATH: the HTTP tests need it.
pub fn python3() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .expect("python3 must be on PATH for the HTTP app of the port tests");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            describe_output(&out)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// `node` on PATH, if any (for `ecosystem.config.js`).
pub fn node() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("node"))
        .find(|p| p.is_file())
}

/// A tiny HTTP app: listens on `127.0.0.1:$PORT` (on the variable named by
/// `$PORT_VAR` instead, when set, for `port_env`) and answers every GET with
/// `instance=<PMD_INSTANCE_ID> pid=<pid> port=<port>`. SIGTERM ends it at
/// once.
pub const HTTP_SERVER: &str = r#"
import http.server, os
port_var = os.environ.get("PORT_VAR", "PORT")
port = int(os.environ[port_var])
body = "instance={} pid={} port={}".format(
    os.environ.get("PMD_INSTANCE_ID", "-"), os.getpid(), port).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// An HTTP app for health checks, driven by its environment: it waits
/// `LISTEN_AFTER_MS` (default 0) before it binds `127.0.0.1:$PORT`, then
/// appends `time.time_ns()` as a line to `$STAMP_FILE` (if set) and prints
/// `listening on PORT`; it answers every GET with 200 `ok`, or with 500
/// while the file `$FAIL_FLAG` exists (relative to its cwd; `{i}` in it is
/// replaced by its `PMD_INSTANCE_ID`). SIGTERM ends it at once.
pub const HEALTH_SERVER: &str = r#"
import http.server, os, time
port = int(os.environ["PORT"])
instance = os.environ.get("PMD_INSTANCE_ID", "0")
fail_flag = os.environ.get("FAIL_FLAG", "").replace("{i}", instance)
time.sleep(int(os.environ.get("LISTEN_AFTER_MS", "0")) / 1000)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        failing = fail_flag != "" and os.path.exists(fail_flag)
        body = b"failing" if failing else b"ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
stamp = os.environ.get("STAMP_FILE")
if stamp:
    with open(stamp, "a") as f:
        f.write("{}\n".format(time.time_ns()))
print("listening on {}".format(port), flush=True)
server.serve_forever()
"#;

/// What [`HTTP_SERVER`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub instance: String,
    pub pid: u32,
    pub port: u16,
}

/// `GET /` on `127.0.0.1:port` with a hand-written HTTP/1.0 request; the
/// parsed body of a 200 from [`HTTP_SERVER`], `None` if nothing answered
/// (refused, timed out, closed early, another status).
pub fn http_get(port: u16) -> Option<HttpReply> {
    // Scaled like every deadline: a slow answer counts as none.
    let timeout = WAIT.div(15).get();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let field = |key: &str| {
        body.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some(HttpReply {
        instance: field("instance")?,
        pid: field("pid")?.parse().ok()?,
        port: field("port")?.parse().ok()?,
    })
}

/// Waits until [`http_get`] on `port` answers, returning the reply.
pub fn wait_http(port: u16) -> HttpReply {
    wait_for_value(&format!("an HTTP answer on port {port}"), WAIT, || {
        http_get(port)
    })
}

/// Wall-clock time in nanoseconds since the epoch, comparable with what an
/// app writes with `date +%s%N` or Python's `time.time_ns()`.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}
