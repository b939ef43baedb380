//! `pmd completions SHELL` and `pmd man`: the static completion scripts of
//! clap_complete and the man pages of clap_mangen, both made from the clap
//! definition in `crate::cli` (so they never drift from the flags). The
//! dynamic completion (`COMPLETE=bash pmd`, app names from the daemon) is
//! `crate::completion`.
//!
//! Talks to: stdout, and the directory of `pmd man --dir`.

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs, ManArgs};
use crate::term;
use crate::writefile;

/// `pmd completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    use clap_complete::Shell;
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Elvish => Shell::Elvish,
        CompletionShell::Powershell => Shell::PowerShell,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pmd", &mut script);
    term::print(&String::from_utf8_lossy(&script))?;
    Ok(())
}

/// `pmd man`: pmd(1) on stdout; with --dir, pmd.1 and a page for every
/// subcommand that is not hidden (pmd-start.1, pmd-token-create.1...).
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its display name `pmd-start`: its page's name.
    cmd.build();
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        term::print(&String::from_utf8_lossy(&page))?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = 0;
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd);
        let mut page = Vec::new();
        man.render(&mut page)?;
        writefile::replace(&dir.join(man.get_filename()), &page, 0o644)?;
        written += 1;
    }
    eprintln!("[pmd] wrote {written} man pages to {}", dir.display());
    Ok(())
}
