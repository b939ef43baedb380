//! Which paths a watcher ignores: the built-in list, the user's
//! `ignore_watch` globs and the absolute `ignore_paths`, all relative to
//! the watched root an event falls under.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{BUILTIN_IGNORES, WatchConfig, WatchError};

/// One watched path as given in [`WatchConfig::paths`].
#[derive(Debug)]
pub(super) struct Root {
    pub(super) path: PathBuf,
    /// A directory is watched with everything below it that is not
    /// ignored; a file through its parent directory, so that editors that
    /// save by writing a new file and renaming it over the old one are
    /// still seen after the first save.
    pub(super) is_dir: bool,
}

impl Root {
    fn contains(&self, path: &Path) -> bool {
        if self.is_dir {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }
}

/// Decides, for an absolute path from an event or a directory walk,
/// whether it is ignored. Built once per watcher; read-only afterwards, so
/// the notify thread and the debounce task share it without a lock.
#[derive(Debug)]
pub(super) struct Filter {
    /// Most specific first (more components first), so a path under
    /// nested roots is judged relative to the innermost one.
    pub(super) roots: Vec<Root>,
    ignore_paths: Vec<PathBuf>,
    /// Built-in ignores and user globs without a `/`: matched against each
    /// component of the path below its root (so a matching directory hides
    /// its whole subtree).
    names: GlobSet,
    /// User globs with a `/` (a leading `/` or `./` removed): matched
    /// against the path below its root and each of its ancestors there.
    relative: GlobSet,
    /// User globs that start with `/`, also tried as absolute paths
    /// (ancestors below the root included).
    absolute: GlobSet,
}

impl Filter {
    /// Compiles the globs and stats the paths; this is all of `validate`.
    pub(super) fn new(cfg: &WatchConfig) -> Result<Self, WatchError> {
        if cfg.paths.is_empty() {
            return Err(WatchError::NoPaths);
        }
        let mut roots = Vec::with_capacity(cfg.paths.len());
        for path in &cfg.paths {
            if !path.is_absolute() {
                return Err(WatchError::RelativePath { path: path.clone() });
            }
            let meta = std::fs::metadata(path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    WatchError::PathNotFound { path: path.clone() }
                } else {
                    WatchError::Io {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            roots.push(Root {
                path: path.clone(),
                is_dir: meta.is_dir(),
            });
        }
        roots.sort_by_key(|r| std::cmp::Reverse(r.path.components().count()));

        let mut names = GlobSetBuilder::new();
        for glob in BUILTIN_IGNORES {
            names.add(compile(glob, glob)?);
        }
        let mut relative = GlobSetBuilder::new();
        let mut absolute = GlobSetBuilder::new();
        for glob in &cfg.ignore {
            let pattern = normalize(glob);
            if pattern.is_empty() {
                return Err(WatchError::InvalidGlob {
                    glob: glob.clone(),
                    reason: "empty pattern".to_owned(),
                });
            }
            if !pattern.contains('/') {
                names.add(compile(glob, pattern)?);
                continue;
            }
            // `gen/**` ignores the directory `gen` itself too: creating or
            // removing it is no change of the app's sources either.
            let whole_dir = pattern.strip_suffix("/**").filter(|dir| !dir.is_empty());
            if pattern.starts_with('/') {
                absolute.add(compile(glob, pattern)?);
                if let Some(dir) = whole_dir {
                    absolute.add(compile(glob, dir)?);
                }
            }
            relative.add(compile(glob, pattern.trim_start_matches('/'))?);
            if let Some(dir) = whole_dir
                .map(|d| d.trim_start_matches('/'))
                .filter(|d| !d.is_empty())
            {
                relative.add(compile(glob, dir)?);
            }
        }
        Ok(Filter {
            roots,
            ignore_paths: cfg.ignore_paths.clone(),
            names: build(names)?,
            relative: build(relative)?,
            absolute: build(absolute)?,
        })
    }

    /// Whether changes at `path` are ignored. Paths under no root (the
    /// siblings of a watched file) are ignored; a root itself never is,
    /// except by `ignore_paths`.
    pub(super) fn is_ignored(&self, path: &Path) -> bool {
        if self
            .ignore_paths
            .iter()
            .any(|p| is_under_ignore_path(path, p))
        {
            return true;
        }
        let Some(root) = self.roots.iter().find(|r| r.contains(path)) else {
            return true;
        };
        let Ok(below) = path.strip_prefix(&root.path) else {
            return true;
        };
        let names_hit = below.components().any(|c| match c {
            Component::Normal(name) => self.names.is_match(name),
            _ => false,
        });
        if names_hit {
            return true;
        }
        if !self.relative.is_empty()
            && below
                .ancestors()
                .take_while(|a| !a.as_os_str().is_empty())
                .any(|a| self.relative.is_match(a))
        {
            return true;
        }
        !self.absolute.is_empty()
            && path
                .ancestors()
                .take_while(|a| *a != root.path)
                .any(|a| self.absolute.is_match(a))
    }

    /// Whether `path` is one of the watched directories themselves.
    pub(super) fn is_dir_root(&self, path: &Path) -> bool {
        self.roots.iter().any(|r| r.is_dir && r.path == path)
    }
}

/// `path` is `ignored` or below it, or a dot-suffixed sibling of it
/// (`app-out.log.1` for `app-out.log`: rotated log files).
fn is_under_ignore_path(path: &Path, ignored: &Path) -> bool {
    if path.starts_with(ignored) {
        return true;
    }
    let (Some(name), Some(ignored_name)) = (path.file_name(), ignored.file_name()) else {
        return false;
    };
    path.parent() == ignored.parent() && is_dot_suffixed(name, ignored_name)
}

fn is_dot_suffixed(name: &OsStr, base: &OsStr) -> bool {
    name.as_encoded_bytes()
        .strip_prefix(base.as_encoded_bytes())
        .is_some_and(|rest| rest.first() == Some(&b'.'))
}

/// `./src/**` → `src/**`; `tmp/` → `tmp` (a trailing `/` only means "a
/// directory" in .gitignore; directories and files are matched alike here).
fn normalize(glob: &str) -> &str {
    let mut pattern = glob.trim();
    while let Some(rest) = pattern.strip_prefix("./") {
        pattern = rest;
    }
    pattern.trim_end_matches('/')
}

/// `glob` is the user's text (for the error), `pattern` what is compiled.
/// `*` and `?` do not cross a `/`; `**` does.
fn compile(glob: &str, pattern: &str) -> Result<globset::Glob, WatchError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| WatchError::InvalidGlob {
            glob: glob.to_owned(),
            reason: e.kind().to_string(),
        })
}

fn build(builder: GlobSetBuilder) -> Result<GlobSet, WatchError> {
    builder.build().map_err(|e| WatchError::InvalidGlob {
        glob: e.glob().unwrap_or_default().to_owned(),
        reason: e.kind().to_string(),
    })
}
