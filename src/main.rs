//! The `coopc` command line: sets up tracing, dispatches to the subcommand, prints reports and
//! picks the exit code (0 success, 1 user error, 2 internal error).
//!
//! Everything else lives in `cli` (one module per subcommand); stdout carries only what the
//! user asked for, and logs and reports go to stderr.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use miette::{GraphicalReportHandler, GraphicalTheme};

use cli::{Cli, Failure};

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cli::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let internal = failure.is_internal();
            report(&failure);
            ExitCode::from(if internal { 2 } else { 1 })
        }
    }
}

/// Lets a closed pipe end the process quietly, as for any Unix tool (`coopc compile M --emit mlir
/// | head`): Rust ignores SIGPIPE, which would turn the closed stdout into a panic in `print!`.
fn restore_default_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs to stderr: warnings by default, `-v` info, `-vv` debug, `-vvv` trace; `RUST_LOG`
/// overrides.
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints every report of `failure` to stderr, in colour on a terminal.
#[expect(
    clippy::print_stderr,
    reason = "the binary's one place that writes reports"
)]
fn report(failure: &Failure) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    if failure.is_internal() {
        eprintln!("coopc hit an internal error: this is a bug, please report it with the input.");
    }
    for diagnostic in failure.diagnostics() {
        let mut text = String::new();
        match handler.render_report(&mut text, diagnostic) {
            Ok(()) => eprint!("{text}"),
            Err(_) => eprintln!("error: {diagnostic}"),
        }
    }
}
