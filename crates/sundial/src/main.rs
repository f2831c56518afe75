//! The `sundial` command.

mod cli;
mod config;
mod dev_namespaces;
mod logging;
mod shutdown;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sundial: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
