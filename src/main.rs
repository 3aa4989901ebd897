use clap::Parser;

fn main() -> std::process::ExitCode {
    attempt_pkg::model::alloc::tune_allocator();
    let cli = attempt_pkg::cli::Cli::parse();
    match attempt_pkg::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
