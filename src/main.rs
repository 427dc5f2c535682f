//! The `switchboard` binary: parses the command line, sets up logging, calls the library.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::config::{Config, DEFAULT_CONFIG};
use switchboard::time::Clock;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "Routes asynchronous messaging conversations to human agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API (embedded default config when no --config is given).
    Serve {
        /// A TOML config file (see docs/config.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides `server.listen`, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SWITCHBOARD_"))
        .collect();
    let text = match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => DEFAULT_CONFIG.to_string(),
    };
    let origin = path.map_or_else(|| "embedded default config".to_string(), |p| p.display().to_string());
    Config::from_toml(&text, &env).with_context(|| format!("invalid configuration in {origin}"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(config))
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let skills = config.engine.skills.len();
    let server = switchboard::api::start(config, Clock::system()).await?;
    tracing::info!(addr = %server.addr, skills, "serving; stop with Ctrl-C or SIGTERM");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
