//! `kvmtorture`: parse the command line, run the command, exit with its code.

use clap::Parser;
use kvmtorture::{app, cli::Cli};

fn main() {
    let code = match app::dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvmtorture: error: {e}");
            e.exit_code()
        }
    };
    // exit (not return): a hung worker must not keep the process alive.
    std::process::exit(code);
}
