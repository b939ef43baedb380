//! How a script is run when no interpreter is given: the interpreter its
//! shebang names (as the kernel reads the line), else the one its
//! extension implies, else the script itself. The daemon resolves an app's
//! command with it at each spawn (`server/src/supervisor/spec.rs`) and
//! `pmd export` writes the same command into units and manifests.
//!
//! Pure: the caller reads the head of the file; nothing here touches it.

/// Interpreters picked by extension when a script has no shebang.
const INTERPRETERS: &[(&str, &str)] = &[
    ("js", "node"),
    ("mjs", "node"),
    ("cjs", "node"),
    ("py", "python3"),
    ("sh", "bash"),
    ("bash", "bash"),
    ("rb", "ruby"),
    ("pl", "perl"),
    ("php", "php"),
];

/// How many bytes of a script's head hold the shebang line that counts
/// (the kernel reads 256 at most).
pub const SHEBANG_HEAD_BYTES: usize = 256;

/// The interpreter a script's extension implies (`app.py` → `python3`).
pub fn interpreter_by_extension(script: &std::path::Path) -> Option<&'static str> {
    let ext = script.extension()?.to_str()?;
    INTERPRETERS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, i)| *i)
}

/// `#!/usr/bin/env python3 -u` → (`/usr/bin/env`, Some(`python3 -u`)): like
/// the kernel, everything after the interpreter is one argument. `head` is
/// the first [`SHEBANG_HEAD_BYTES`] of the file (or fewer).
pub fn parse_shebang(head: &[u8]) -> Option<(String, Option<String>)> {
    let head = &head[..head.len().min(SHEBANG_HEAD_BYTES)];
    let rest = head.strip_prefix(b"#!")?;
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..line_end]).ok()?.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim().to_string()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    (!interp.is_empty()).then(|| (interp.to_string(), arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shebang_is_read_as_the_kernel_reads_it() {
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env python3 -u\nprint(1)\n"),
            Some(("/usr/bin/env".into(), Some("python3 -u".into())))
        );
        assert_eq!(
            parse_shebang(b"#!/bin/sh\n"),
            Some(("/bin/sh".into(), None))
        );
        assert_eq!(parse_shebang(b"#!  \n"), None);
        assert_eq!(parse_shebang(b"echo hi\n"), None);
    }

    #[test]
    fn extensions_name_their_interpreter() {
        assert_eq!(
            interpreter_by_extension(Path::new("/a/app.js")),
            Some("node")
        );
        assert_eq!(
            interpreter_by_extension(Path::new("app.py")),
            Some("python3")
        );
        assert_eq!(interpreter_by_extension(Path::new("app")), None);
        assert_eq!(interpreter_by_extension(Path::new("app.txt")), None);
    }
}
