//! The `berth` binary: parses the command line and hands over to the server
//! or the client commands.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use berth::cli::{Cli, Command};

/// mimalloc instead of glibc's malloc: sled and the gRPC stack allocate and
/// free many small objects per write, and profiles under load showed glibc's
/// malloc (with its consolidation passes) as the largest single CPU cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // A client command whose output goes to a closed pipe (`berth
        // containers list | head`) ends quietly, like other command-line
        // tools, instead of panicking on the failed print. The server keeps
        // Rust's default (SIGPIPE ignored): a peer that goes away must not
        // kill it.
        // SAFETY: restoring the default disposition of SIGPIPE, before any
        // thread is started, has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    let threads = match &cli.command {
        Command::Serve(args) => args.worker_threads,
        Command::Bench(args) => args.threads,
        _ => 0,
    };
    if threads > 0 {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
