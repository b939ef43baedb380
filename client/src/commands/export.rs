//! `pmd export kubernetes|systemd|compose FILE`: loads the file as `pmd
//! start FILE` does (`files::load`: the same checks, warnings and notes,
//! `--env NAME`, `--only`, `~` expanded), hands the specs to
//! [`crate::export`], and prints the result on stdout or writes it into
//! `-o DIR` ([`crate::export::files`]). What a target cannot express is
//! listed on stderr, one line per app and key. Needs no daemon.

use std::path::Path;

use anyhow::Context as _;

use super::files;
use crate::UsageError;
use crate::cli::ExportArgs;
use crate::ecosystem;
use crate::export::{self, Notes, Target};

pub(super) fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let path = args.file.as_str();
    if ecosystem::format_of(Path::new(path)).is_none() {
        return Err(UsageError(format!(
            "{path} is not an ecosystem file: pmd reads .yaml, .yml, .json and \
             ecosystem*.js / *.config.js|cjs|mjs files"
        ))
        .into());
    }
    let image = match (args.target, args.image.as_deref()) {
        (Target::Systemd, Some(_)) => {
            return Err(UsageError(
                "--image is for kubernetes and compose: a systemd unit runs the app on this \
                 host"
                    .into(),
            )
            .into());
        }
        (Target::Systemd, None) => "",
        (target, None) => {
            return Err(UsageError(format!(
                "{} needs --image IMAGE: an ecosystem file names no image; build one that \
                 holds the app at the paths the file gives (see README, \"Export to Kubernetes, \
                 systemd and compose\")",
                target.word()
            ))
            .into());
        }
        (_, Some(image)) => image,
    };
    let loaded = files::load(
        path,
        args.environment.environment.as_deref(),
        &args.only.only,
        false,
    )?;
    let mut specs = loaded.specs.clone();
    for spec in &mut specs {
        let label = format!("{}: app {}", loaded.file.display, spec.name);
        crate::home::resolve_paths(spec, false, &label).map_err(UsageError)?;
    }
    let dir = Path::new(&loaded.file.dir);
    let mut notes = Notes::default();
    let output = match args.target {
        Target::Kubernetes => export::kubernetes::export(&specs, dir, path, image, &mut notes),
        Target::Systemd => export::systemd::export(&specs, dir, path, &mut notes),
        Target::Compose => export::compose::export(&specs, dir, path, image, &mut notes),
    }
    .with_context(|| format!("cannot export {path} to {}", args.target.word()))?;
    let order: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for line in notes.lines(&order) {
        eprintln!("[pmd] {path}: {line}");
    }
    match &args.output_dir {
        Some(out) => {
            let written = export::files::write_all(out, &output.files)?;
            for file in written {
                crate::term::print(&format!("{}\n", file.display()))?;
            }
        }
        None => {
            let text = match args.target {
                Target::Systemd => output
                    .files
                    .iter()
                    .map(|(name, text)| format!("### {name}\n{text}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => output
                    .files
                    .iter()
                    .map(|(_, text)| text.as_str())
                    .collect::<Vec<_>>()
                    .join("---\n"),
            };
            crate::term::print(&text)?;
        }
    }
    Ok(())
}
