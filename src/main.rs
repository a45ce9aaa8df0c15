//! The `scoreflow` binary: the library's whole program with the built-in
//! stages. A user crate adds its own with [`scoreflow::cli::main_with`].

fn main() -> std::process::ExitCode {
    scoreflow::cli::main_with(Vec::new())
}
