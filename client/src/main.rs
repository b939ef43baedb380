//! The `pmd` binary: parse the command line, run it, map the result to an
//! exit code (clap exits 2 on usage errors by itself).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pmd::cli::Cli::parse();
    pmd::exit_code(pmd::run(cli))
}
