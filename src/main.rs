//! `kvmtorture`: parse the command line, run the command, exit with its code.

use clap::Parser;
use kvmtorture::{app, cli::Cli, error::exit};

fn main() {
    let cli = Cli::parse();
    // A panic that escapes a command is a harness fault (exit 4), never a raw abort.
    let code = match std::panic::catch_unwind(|| app::dispatch(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("kvmtorture: error: {e}");
            e.exit_code()
        }
        Err(_) => {
            eprintln!("kvmtorture: harness fault: a command panicked (message above)");
            exit::FAULT
        }
    };
    // exit (not return): a hung worker must not keep the process alive.
    std::process::exit(code);
}
