//! `script` as PM2 takes it, for ecosystem files and `pmd start SCRIPT`:
//! a directory runs its `package.json` `main` (else its `index.js`), and a
//! string with spaces that is not an existing file is a command line,
//! split like a shell would (`"npm run start"` runs `npm` with `run
//! start` before the app's own `args`), or run by `sh -c` when it uses
//! the shell's syntax (`"npm ci && npm start"`), as PM2 runs every command
//! line with `bash -c`.
//!
//! Reads the file system (is it a file, a directory, what does its
//! package.json say) relative to the directory the script resolves
//! against; without one (a remote daemon's paths are not this machine's)
//! only the command-line split applies.

use std::path::Path;

/// Characters that make a command line a shell's to run.
const SHELL_SYNTAX: &[char] = &['|', '&', ';', '<', '>', '(', ')', '$', '`', '\n', '*', '?'];

/// A script as pmd sends it: the file or command, and the words a command
/// line had after it (they go before the app's `args`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    pub script: String,
    pub leading_args: Vec<String>,
}

/// What `script` means, resolved against `base` when there is one.
/// `what` names the value in errors (`script`, `` `script` ``).
pub fn shape(what: &str, script: &str, base: Option<&Path>) -> Result<Shaped, String> {
    let plain = Shaped {
        script: script.to_string(),
        leading_args: Vec::new(),
    };
    let on_disk = base.map(|base| base.join(script));
    if let Some(path) = &on_disk {
        if path.is_dir() {
            let entry = package_entry(path).ok_or_else(|| {
                format!(
                    "{what}: {} is a directory without a package.json `main` or an index.js; \
                     name the file to run",
                    path.display()
                )
            })?;
            let joined = Path::new(script).join(entry);
            return Ok(Shaped {
                script: joined.to_string_lossy().into_owned(),
                leading_args: Vec::new(),
            });
        }
        if path.exists() {
            return Ok(plain);
        }
    }
    if !script.trim().contains(char::is_whitespace) {
        return Ok(plain);
    }
    // Pipes, `&&`, redirections, variables: only a shell runs that, and
    // PM2 runs every command line with one (`bash -c`).
    if script.contains(SHELL_SYNTAX) {
        return Ok(Shaped {
            script: "sh".to_string(),
            leading_args: vec!["-c".to_string(), script.to_string()],
        });
    }
    let mut words = shell_words::split(script).map_err(|e| {
        format!(
            "{what}: {script:?} is not a file, and cannot be split into a command line ({e}); \
             check its quotes"
        )
    })?;
    if words.is_empty() {
        return Err(format!("{what}: is empty"));
    }
    let command = words.remove(0);
    Ok(Shaped {
        script: command,
        leading_args: words,
    })
}

/// The file Node would run for directory `dir`: package.json's `main`
/// (as a file, with `.js`, or as a directory's `index.js`), else
/// `index.js`. Relative to `dir`.
fn package_entry(dir: &Path) -> Option<String> {
    let main = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json.get("main")?.as_str().map(str::to_string))
        .filter(|main| !main.trim().is_empty());
    let mut candidates = Vec::new();
    if let Some(main) = main {
        let main = main.trim_start_matches("./").to_string();
        candidates.push(main.clone());
        candidates.push(format!("{main}.js"));
        candidates.push(format!("{}/index.js", main.trim_end_matches('/')));
    }
    candidates.push("index.js".to_string());
    candidates.into_iter().find(|c| dir.join(c).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(script: &str, args: &[&str]) -> Shaped {
        Shaped {
            script: script.into(),
            leading_args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_command_line_is_split_like_a_shell() {
        assert_eq!(
            shape("s", "npm run start", None),
            Ok(shaped("npm", &["run", "start"]))
        );
        assert_eq!(
            shape("s", "node --loader ts-node/esm ./src/index.ts", None),
            Ok(shaped(
                "node",
                &["--loader", "ts-node/esm", "./src/index.ts"]
            ))
        );
        assert_eq!(
            shape("s", "sh -c 'echo a b'", None),
            Ok(shaped("sh", &["-c", "echo a b"]))
        );
        assert_eq!(shape("s", "./app.js", None), Ok(shaped("./app.js", &[])));
        assert!(shape("s", "npm 'run", None).unwrap_err().contains("quotes"));
        assert_eq!(
            shape("s", "npm ci && npm start", None),
            Ok(shaped("sh", &["-c", "npm ci && npm start"]))
        );
        assert_eq!(
            shape("s", "echo $HOME > out", None),
            Ok(shaped("sh", &["-c", "echo $HOME > out"]))
        );
    }

    #[test]
    fn files_and_directories_on_disk() {
        let dir = std::env::temp_dir().join(format!("pmd-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("api/lib")).unwrap();
        std::fs::create_dir_all(dir.join("plain")).unwrap();
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        std::fs::write(dir.join("api/package.json"), r#"{"main": "./lib/server"}"#).unwrap();
        std::fs::write(dir.join("api/lib/server.js"), "").unwrap();
        std::fs::write(dir.join("plain/index.js"), "").unwrap();
        std::fs::write(dir.join("my app.js"), "").unwrap();
        let base = Some(dir.as_path());
        assert_eq!(
            shape("s", "api", base),
            Ok(shaped("api/lib/server.js", &[]))
        );
        assert_eq!(
            shape("s", "./plain", base),
            Ok(shaped("./plain/index.js", &[]))
        );
        let err = shape("`script`", "empty", base).unwrap_err();
        assert!(
            err.contains("without a package.json `main` or an index.js"),
            "{err}"
        );
        // An existing file with a space stays a file.
        assert_eq!(shape("s", "my app.js", base), Ok(shaped("my app.js", &[])));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
