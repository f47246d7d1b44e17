//! The commands behind the CLI. `main.rs` parses and maps the result to an exit code;
//! everything else happens here.

mod bench;
mod exec;
mod hunt;
mod list;
mod replay;
mod run;
mod shrink;
mod validate;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs a parsed command line; `Ok` carries the exit code.
pub fn dispatch(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Bench(a) => bench::bench(&a),
        Command::List(a) => list::list(&a),
        Command::Run(a) => run::run(&a),
        Command::Replay(a) => replay::replay(&a),
        Command::Hunt(a) => hunt::hunt(&a),
        Command::Shrink(a) => shrink::shrink(&a),
        Command::Validate(a) => validate::validate(&a),
    }
}
