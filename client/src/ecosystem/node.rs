//! JavaScript ecosystem files (`ecosystem.config.js`, `*.config.cjs|mjs`):
//! a `node` child imports the file and prints `JSON.stringify` of what it
//! exports (`module.exports = {apps: [...]}`, `export default {...}`, a
//! bare array, or named exports such as `export const apps`), and that JSON
//! is then read like a `.json` file.
//!
//! The child runs in the caller's directory with the caller's environment,
//! as PM2 would run the file, and is killed after [`NODE_TIMEOUT`]: a
//! config that starts a server must not hang `pmd`. Without `node` on
//! PATH the error says how to convert the file once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Longest a config file may take to evaluate.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Imports `process.argv[1]` and prints its export as JSON; exits at once
/// so timers or sockets the file opened do not keep node alive (stdout is
/// synchronous for pipes and files on Linux, so nothing is lost). What the
/// file prints itself (`console.log`, dotenv's notes) goes to stderr, so
/// stdout holds the JSON alone.
const EVALUATE: &str = r#"
const { pathToFileURL } = require("url");
const json = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
import(pathToFileURL(process.argv[1]).href).then((m) => {
  const value = m.default !== undefined ? m.default : m;
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) throw new Error("the file exports nothing that JSON can hold");
  json(text + "\n");
  process.exit(0);
}).catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(1);
});
"#;

/// `node` on PATH, if any.
pub fn find() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How to do without node: the one-liner that converts the file to JSON.
pub fn conversion_hint(display: &str) -> String {
    let name = Path::new(display)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(display);
    let json = format!(
        "{}.json",
        name.split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("ecosystem")
    );
    let load = if name.ends_with(".mjs") {
        format!("(await import(\"./{name}\")).default")
    } else {
        format!("require(\"./{name}\")")
    };
    let flag = if name.ends_with(".mjs") {
        "--input-type=module "
    } else {
        ""
    };
    format!(
        "{display} is JavaScript and `node` is not on PATH to evaluate it. Install Node.js, or \
         convert the file once where node exists (in its directory):\n    \
         node {flag}-e 'console.log(JSON.stringify({load}, null, 2))' > {json}\n\
         then run `pmd start {json}`; or rewrite it as YAML (same field names)"
    )
}

/// Evaluates the JS file `file` with `node` and returns the JSON it
/// exports. `display` is the path as the user wrote it.
pub fn evaluate(file: &Path, display: &str, node: Option<&Path>) -> anyhow::Result<String> {
    let Some(node) = node else {
        bail!("{}", conversion_hint(display));
    };
    let child = Command::new(node)
        .arg("-e")
        .arg(EVALUATE)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {} to evaluate {display}", node.display()))?;
    let pid = child.id();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(NODE_TIMEOUT) {
        Ok(output) => output.with_context(|| format!("cannot evaluate {display} with node"))?,
        Err(_) => {
            // The child is not reaped until the waiting thread sees it
            // exit, so this pid is still node's.
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            bail!(
                "node did not finish evaluating {display} within {}s; an ecosystem file should \
                 only export its settings",
                NODE_TIMEOUT.as_secs()
            );
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "node could not evaluate {display} ({}):\n{}",
            output.status,
            stderr.trim_end()
        );
    }
    // The file's own output, as PM2 would show it; stdout stays for pmd's.
    if !output.stderr.is_empty() {
        use std::io::Write;
        let _ = std::io::stderr().write_all(&output.stderr);
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("node printed {display}'s settings in something else than UTF-8"))
}
