//! The `scoreflow` binary: parse arguments, hand them to the library, map the
//! outcome to an exit code. Everything else lives in the library crate.

use std::process::ExitCode;

fn main() -> ExitCode {
    match scoreflow::cli::main_with_args(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            let code = err.exit_code();
            match &err {
                // Spec errors print as a list of `error: file:line:col: …` lines.
                scoreflow::error::Error::Spec(e) => eprintln!("{e}"),
                // Every error's message already names its cause: print it once.
                _ => eprintln!("error: {err}"),
            }
            ExitCode::from(code)
        }
    }
}
