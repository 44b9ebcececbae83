//! The `sluice` command line: `serve` (wires the store, the runtime, the
//! engine and the API together), `plugin test` (the sandbox on local
//! events), `plugin new` (a stage project in Rust, Python or JavaScript),
//! `catalog export`/`restore` (a server's catalog as plain files)
//! and `bench` (the load benchmark, driving a real server).
//!
//! May use every module; nothing uses it.

mod bench;
mod catalog;
mod plugin_new;
mod plugin_test;
pub mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Streaming event pipeline with sandboxed WebAssembly stages")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: ingest, workers and the admin API.
    Serve(serve::ServeArgs),
    /// The load benchmark: a server under HTTP load on the chosen store.
    Bench(bench::BenchArgs),
    /// Export a server's catalog (plugins, pipeline specs, tables) as plain
    /// files, or restore one.
    Catalog {
        #[command(subcommand)]
        command: catalog::CatalogCommand,
    },
    /// Work with stage plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Run a plugin locally over NDJSON events, in the same sandbox as the server.
    Test(plugin_test::TestArgs),
    /// Make a new stage project (Rust, Python or JavaScript) that builds and
    /// passes `plugin test` as generated.
    New(plugin_new::NewArgs),
}

/// Runs the parsed command; the answer is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Catalog { command } => catalog::run(command),
        Command::Plugin { command: PluginCommand::Test(args) } => plugin_test::run(args),
        Command::Plugin { command: PluginCommand::New(args) } => plugin_new::run(args),
    }
}
