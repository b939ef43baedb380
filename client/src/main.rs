//! The `pmd` binary: answer the shell when it asks for completions
//! (`COMPLETE=bash pmd ...`), else parse the command line, run it, map the
//! result to an exit code (clap exits 2 on usage errors by itself).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pmd::completion::complete_from_env();
    let cli = pmd::cli::Cli::parse();
    pmd::exit_code(pmd::run(cli))
}
