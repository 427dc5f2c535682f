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
        /// Where the embedded store keeps its file (created if missing), unless
        /// `[store] url` names another store.
        #[arg(long, default_value = "./switchboard-data")]
        data_dir: PathBuf,
        /// Keep the state in memory only: a restart loses it.
        #[arg(long, conflicts_with = "data_dir")]
        ephemeral: bool,
    },
    /// Run a scenario on virtual time against the real engine (see docs/simulation.md).
    Simulate {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write a chart of queue depth and agent load over time.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Drive a running server over HTTP at a fixed arrival rate and report latencies.
    Loadtest {
        /// Base URL of the server, e.g. http://127.0.0.1:8080. Repeat it for every node
        /// of a cluster: requests go round robin, and move on to the next node when one
        /// is down or answers 503.
        #[arg(long, required = true)]
        url: Vec<String>,
        /// Conversations opened per second (open loop).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// How long arrivals go on, e.g. 60s, 5m.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: std::time::Duration,
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 4)]
        skills: usize,
        /// Bearer token (also SWITCHBOARD_API_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// Also write the summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to wait for running conversations once arrivals stop, e.g. 15s.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        drain: std::time::Duration,
        /// Write what the server acknowledged (conversations opened and closed with a
        /// 2xx) to this file, to check a restarted server with --reconcile-only.
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Send no load: check the server against --ledger (every acknowledged
        /// conversation exists, acknowledged closes hold, none held by two agents).
        #[arg(long, requires = "ledger")]
        reconcile_only: bool,
        /// With several --url: send a conversation's requests to the node that served
        /// its last one (the answer's x-switchboard-served-by header, when it names one
        /// of the --url), instead of round robin, saving the forwarding hop.
        #[arg(long)]
        follow_owner: bool,
        /// The run's skills are PREFIX-0, PREFIX-1, ...: a prefix of its own keeps its
        /// conversations off the agents of other runs on the same server.
        #[arg(long, value_name = "PREFIX", default_value = "lt-skill")]
        skill_prefix: String,
        /// Name each conversation and agent with its skill as placement key
        /// (`…-c7~lt-skill-1`): a cluster places it with that skill's queue.
        #[arg(long)]
        colocate: bool,
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
    // ractor opens an info-level span for every actor it spawns (with its id formatted)
    // and enters it at every poll: one per conversation activation. Its warnings and
    // errors are kept; `RUST_LOG` overrides the whole filter.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,actix_server=warn,ractor=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            ephemeral,
        } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            if ephemeral {
                config.store.url = None;
            } else if config.store.url.is_none() {
                config.store.url = Some(format!("sqlite://{}", data_dir.join("switchboard.db").display()));
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(config))
        }
        Command::Simulate {
            scenario,
            json,
            svg,
            seed,
        } => simulate(&scenario, json.as_ref(), svg.as_ref(), seed),
        Command::Loadtest {
            url,
            rate,
            duration,
            agents,
            skills,
            token,
            json,
            seed,
            drain,
            ledger,
            reconcile_only,
            follow_owner,
            skill_prefix,
            colocate,
        } => {
            let token = token.or_else(|| std::env::var("SWITCHBOARD_API_TOKEN").ok());
            let urls: Vec<String> = url.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
            if reconcile_only {
                let path = ledger.context("--reconcile-only needs --ledger")?;
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                let ledger: switchboard::loadtest::Ledger =
                    serde_json::from_str(&text).with_context(|| format!("{} is not a ledger", path.display()))?;
                // Every node must show the same acknowledged state.
                let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                let mut all = Vec::new();
                for url in &urls {
                    let r =
                        runtime.block_on(switchboard::loadtest::reconcile_ledger(url, token.as_deref(), &ledger))?;
                    println!("{url}:");
                    print!("{}", r.text());
                    all.push((url.clone(), r));
                }
                if let Some(p) = json {
                    // One node: its reconciliation; several: by URL.
                    let text = match all.as_slice() {
                        [(_, r)] => serde_json::to_string_pretty(r)?,
                        _ => {
                            let out: BTreeMap<&str, &switchboard::loadtest::Reconciliation> =
                                all.iter().map(|(u, r)| (u.as_str(), r)).collect();
                            serde_json::to_string_pretty(&out)?
                        }
                    };
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                }
                let unclean: Vec<&str> = all
                    .iter()
                    .filter(|(_, r)| !r.is_clean())
                    .map(|(u, _)| u.as_str())
                    .collect();
                anyhow::ensure!(
                    unclean.is_empty(),
                    "the server does not match the ledger at {}",
                    unclean.join(", ")
                );
                return Ok(());
            }
            let opts = switchboard::loadtest::Options {
                urls,
                rate,
                duration,
                agents,
                skills,
                token,
                seed,
                drain,
                ledger,
                follow_owner,
                skill_prefix,
                colocate,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let summary = runtime.block_on(switchboard::loadtest::run(opts))?;
            print!("{}", summary.text());
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_string_pretty(&summary)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            anyhow::ensure!(summary.lost == 0, "{} conversations lost", summary.lost);
            Ok(())
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

fn simulate(path: &PathBuf, json: Option<&PathBuf>, svg: Option<&PathBuf>, seed: Option<u64>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut scenario = switchboard::sim::scenario::Scenario::from_toml(&text)
        .with_context(|| format!("invalid scenario {}", path.display()))?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let mut bar = switchboard::progress::Progress::new("simulating");
    let report = switchboard::sim::run(&scenario, &mut |share| bar.set(share))?;
    bar.finish();
    print!("{}", report.text(&path.display().to_string()));
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = svg {
        std::fs::write(p, report.svg()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `90`, `90s`, `5m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.trim().len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
