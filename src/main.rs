//! `parley`: the command line. Parses arguments, starts tracing and calls into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use parley::app::App;
use parley::cli::{bench, chat, eval, ingest, knowledge_bench};
use parley::config::Config;

/// mimalloc rather than the system allocator: the server allocates small, short-lived buffers on
/// every request and message across many threads, where glibc's malloc spent about a tenth of the
/// server's CPU under load (measured with `perf` during `parley bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parley: a conversational agent server for WhatsApp, email and web chat.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server and its workers (configuration from parley.toml and the environment).
    Serve,
    /// Talk to a running server as a prospect, through the web channel.
    Chat(chat::ChatArgs),
    /// Fire signed WhatsApp webhooks at a running server and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Measure quality: `parley eval intents --test test.csv`.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Add files or folders to the knowledge base (replacing documents of the same name).
    Ingest(ingest::IngestArgs),
    /// Measure knowledge ingestion and search speed on a temporary knowledge base.
    BenchKnowledge(knowledge_bench::KnowledgeBenchArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("parley: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let config = Config::load()?;
            parley::telemetry::init(config.log_format);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("PARLEY_LISTEN {}: cannot bind: {e}", config.listen)
                })?;
            App::build(config, listener)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Chat(args) => chat::run(args).await,
        Command::Ingest(args) => {
            let config = Config::load()?;
            parley::telemetry::init(config.log_format);
            ingest::run(args).await
        }
        Command::BenchKnowledge(args) => knowledge_bench::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Eval(command) => {
            let prompts = std::env::var("PARLEY_PROMPTS_DIR").unwrap_or_else(|_| "prompts".into());
            eval::run(command, &PathBuf::from(prompts).join("intents.toml")).await
        }
        Command::Migrate => {
            let config = Config::load()?;
            parley::telemetry::init(config.log_format);
            let store = parley::store::Store::open_configured(&config, None).await?;
            println!("database schema is up to date ({})", store.backend_name());
            Ok(())
        }
    }
}
