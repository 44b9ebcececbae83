//! The `sluice` command line: `serve` (wires the store, the runtime, the
//! engine and the API together), `plugin test` (the sandbox on local
//! events), `plugin new` (a stage project in Rust, Python or JavaScript),
//! `catalog export`/`restore` (a server's catalog as plain files)
//! and `bench` (the load benchmark, driving a real server); and the client
//! commands that talk to a server (`send`, `apply`, `pipelines`, `get`,
//! `plugin push|ls|rm`, `tail`, `dlq`, `top`, `completions`), one file per
//! command group, sharing [`client`].
//!
//! May use every module; nothing uses it.

mod bench;
mod catalog;
pub mod client;
mod dlq;
mod pipelines;
mod plugin_new;
mod plugin_test;
mod plugins;
mod send;
pub mod serve;
mod tail;
mod top;

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Streaming event pipeline with sandboxed WebAssembly stages")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// `--server`, `--token`, `--json`: global, for the client commands.
    #[command(flatten)]
    pub server: client::ServerArgs,
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
    /// Send events from files (JSON, JSON array or NDJSON; `-` for stdin)
    /// in batches, retrying 429/503 with an idempotency key.
    Send(send::SendArgs),
    /// Create or replace a pipeline from a spec file (JSON, YAML or TOML),
    /// printing the difference from the stored spec.
    Apply(pipelines::ApplyArgs),
    /// List the pipelines.
    Pipelines,
    /// Show one pipeline's spec and counters.
    Get(pipelines::GetArgs),
    /// Follow a pipeline's outputs (or, with --window, a window's live feed).
    Tail(tail::TailArgs),
    /// The dead letter queue: list, show, replay, purge.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// A live view of every pipeline, stage and sink.
    Top(top::TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Run a plugin locally over NDJSON events, in the same sandbox as the server.
    Test(plugin_test::TestArgs),
    /// Make a new stage project (Rust, Python or JavaScript) that builds and
    /// passes `plugin test` as generated.
    New(plugin_new::NewArgs),
    /// Upload a component to the server (a new version, or the existing one
    /// for identical bytes).
    Push(plugins::PushArgs),
    /// List the server's plugins and versions.
    Ls,
    /// Delete one version of a plugin from the server.
    Rm(plugins::RmArgs),
}

/// Runs the parsed command; the answer is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Catalog { command } => catalog::run(command, &cli.server),
        Command::Plugin { command: PluginCommand::Test(args) } => plugin_test::run(args),
        Command::Plugin { command: PluginCommand::New(args) } => plugin_new::run(args),
        Command::Plugin { command: PluginCommand::Push(args) } => plugins::push(args, &cli.server),
        Command::Plugin { command: PluginCommand::Ls } => plugins::ls(&cli.server),
        Command::Plugin { command: PluginCommand::Rm(args) } => plugins::rm(args, &cli.server),
        Command::Send(args) => send::run(args, &cli.server),
        Command::Apply(args) => pipelines::apply(args, &cli.server),
        Command::Pipelines => pipelines::list(&cli.server),
        Command::Get(args) => pipelines::get(args, &cli.server),
        Command::Tail(args) => tail::run(args, &cli.server),
        Command::Dlq { command } => dlq::run(command, &cli.server),
        Command::Top(args) => top::run(args, &cli.server),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            Ok(0)
        }
    }
}
