//! The `fleetcast` command: run the pipeline and its dashboard (`up`) or one actor (`run`), watch subjects
//! (`tail`), steer the simulation (`scenario`), export training data (`export`) and switch the
//! predictors' model (`model load`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fleetcast::bus::{self, Bus, NatsServer};
use fleetcast::settings::Settings;
use fleetcast::wire::{SCHEMA_VERSION, ScenarioReply, ScenarioRequest};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Predictive monitoring for server fleets: a Temporal Fusion Transformer on ONNX Runtime
/// behind NATS actors.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Settings file (TOML). Default: ./fleetcast.toml when it exists. Every key can be
    /// overridden by FLEETCAST_<SECTION>__<KEY>, e.g. FLEETCAST_GENERATOR__SERVERS=500.
    #[arg(long, short, global = true, env = "FLEETCAST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every actor in one process. Starts a private nats-server (JetStream on, data in
    /// nats.data_dir) when nothing answers at the default local URL.
    Up,
    /// Run one actor as its own process (run several to scale out).
    Run {
        /// Which actor.
        actor: ActorKind,
    },
    /// Print every message on a subject as one JSON line, e.g. tail 'fleetcast.metrics.>'.
    Tail(fleetcast::tail::TailArgs),
    /// Switch the running generator's scenario and print what changed.
    Scenario {
        /// healthy, natural, degrading, critical or cascade; `status` only asks.
        scenario: String,
    },
    /// Run the generator offline at full speed and write training data as Parquet.
    Export(fleetcast::export::ExportArgs),
    /// Forecast from a history file (CSV or Parquet) with the model, no bus needed: p10/p50/p90
    /// per server, metric, origin and step, written as CSV or Parquet.
    Forecast(fleetcast::offline::forecast::ForecastArgs),
    /// Score the model on a history file against persistence and seasonal naive, per lead-time
    /// band (prints a table; --json writes it).
    Backtest(fleetcast::offline::backtest::BacktestArgs),
    /// Check a settings file and print the settings in effect.
    Config,
    /// Manage the model the predictor workers serve.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Make every running predictor worker check the model in DIR and switch to it; a model
    /// that does not fit is refused and the old one keeps serving. Prints each worker's reply.
    Load {
        /// Model directory (model.onnx + model.json), as the workers see it.
        dir: PathBuf,
        /// Seconds to wait for the first worker's reply.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
}

/// The actors that `run` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ActorKind {
    /// The synthetic fleet.
    Generator,
    /// Per-server windows and predict jobs.
    WindowKeeper,
    /// Forecasts on ONNX Runtime (start several to add capacity).
    Predictor,
    /// Risk per server from samples and forecasts, and the fleet summary.
    RiskScorer,
    /// Alerts with hysteresis from risk scores and forecasts.
    AlertRouter,
    /// HTTP API, push updates, Prometheus /metrics and the dashboard (gateway.bind).
    Gateway,
    /// Scrapes node_exporter targets into samples (`[node_exporter]`).
    NodeExporter,
    /// Receives Prometheus remote-write requests into samples (`[remote_write]`).
    RemoteWrite,
}

impl ActorKind {
    /// Every actor, in pipeline order (`up` starts them last to first).
    const ALL: [ActorKind; 6] = [
        ActorKind::Generator,
        ActorKind::WindowKeeper,
        ActorKind::Predictor,
        ActorKind::RiskScorer,
        ActorKind::AlertRouter,
        ActorKind::Gateway,
    ];

    /// The input actors `up` starts when their section says `enabled = true`.
    const INPUTS: [ActorKind; 2] = [ActorKind::NodeExporter, ActorKind::RemoteWrite];
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(path: Option<PathBuf>) -> Result<Settings> {
    let path = path.or_else(|| {
        let default = PathBuf::from("fleetcast.toml");
        default.is_file().then_some(default)
    });
    Settings::load(path.as_deref()).with_context(|| match &path {
        Some(path) => format!("settings from {}", path.display()),
        None => "settings from the environment".to_string(),
    })
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cli: Cli) -> Result<()> {
    let settings = load_settings(cli.config)?;
    init_tracing(&settings.log.level);
    match cli.command {
        Command::Export(args) => {
            fleetcast::export::run(&args).context("export")?;
            Ok(())
        }
        Command::Forecast(args) => {
            let summary = fleetcast::offline::forecast::run(&args, &settings.predictor.ort_library)
                .context("forecast")?;
            eprintln!(
                "forecast: {} rows for {} origins of {} servers written to {}{}",
                summary.rows,
                summary.origins,
                summary.servers,
                args.out.display(),
                if summary.skipped_origins > 0 {
                    format!(
                        " ({} origins skipped: no metric had enough history)",
                        summary.skipped_origins
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Backtest(args) => {
            let report = fleetcast::offline::backtest::run(&args, &settings.predictor.ort_library)
                .context("backtest")?;
            print!("{}", report.table());
            Ok(())
        }
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
        Command::Up => {
            let mut actors = ActorKind::INPUTS
                .into_iter()
                .filter(|input| match input {
                    ActorKind::NodeExporter => settings.node_exporter.enabled,
                    ActorKind::RemoteWrite => settings.remote_write.enabled,
                    _ => false,
                })
                .collect::<Vec<_>>();
            actors.extend(ActorKind::ALL);
            actix_main(settings, actors, true)
        }
        Command::Run { actor } => actix_main(settings, vec![actor], false),
        Command::Tail(args) => tokio_main(async move {
            let bus = Bus::connect(&settings.nats).await?;
            fleetcast::tail::run(&bus, &args, &mut std::io::stdout().lock()).await?;
            Ok(())
        }),
        Command::Scenario { scenario } => tokio_main(async move {
            let bus = Bus::connect(&settings.nats).await?;
            let request = ScenarioRequest {
                v: SCHEMA_VERSION,
                scenario,
            };
            let reply: ScenarioReply = bus
                .request(
                    bus.subjects().control_scenario(),
                    &request,
                    Duration::from_secs(5),
                )
                .await
                .map_err(anyhow::Error::msg)
                .context("is a generator running? (`fleetcast up` or `fleetcast run generator`)")?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            if !reply.ok {
                bail!("scenario refused: {}", reply.error.unwrap_or_default());
            }
            Ok(())
        }),
        Command::Model {
            command: ModelCommand::Load { dir, timeout },
        } => tokio_main(async move {
            let bus = Bus::connect(&settings.nats).await?;
            let replies = fleetcast::actors::predictor::request_model_load(
                &bus,
                &dir.to_string_lossy(),
                Duration::from_secs_f64(timeout),
                Duration::from_secs(1),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            for reply in &replies {
                println!("{}", serde_json::to_string(reply)?);
            }
            if replies.is_empty() {
                bail!("no predictor worker answered (`fleetcast run predictor` starts one)");
            }
            let refused = replies.iter().filter(|reply| !reply.ok).count();
            if refused > 0 {
                bail!(
                    "{refused} of {} workers refused the model (they keep serving the old one)",
                    replies.len()
                );
            }
            Ok(())
        }),
    }
}

fn tokio_main(future: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Runs the chosen actors on an actix system until Ctrl-C.
fn actix_main(settings: Settings, actors: Vec<ActorKind>, embed: bool) -> Result<()> {
    let system = actix::System::new();
    system.block_on(async move {
        let (bus, _server): (Bus, Option<NatsServer>) = if embed {
            bus::connect_or_embed(&settings.nats).await?
        } else {
            (Bus::connect(&settings.nats).await?, None)
        };
        bus.ensure_streams()
            .await
            .context("creating jetstream streams")?;
        let mut gateways = Vec::new();
        // Start last-to-first so every consumer listens before its producer publishes.
        for actor in actors.iter().rev() {
            match actor {
                ActorKind::WindowKeeper => {
                    fleetcast::actors::window_keeper::spawn(&settings, bus.clone())
                        .await
                        .context("starting the window keeper")?;
                }
                ActorKind::RiskScorer => {
                    fleetcast::actors::risk_scorer::spawn(&settings, bus.clone())
                        .await
                        .context("starting the risk scorer")?;
                }
                ActorKind::AlertRouter => {
                    fleetcast::actors::alert_router::spawn(&settings, bus.clone())
                        .await
                        .context("starting the alert router")?;
                }
                ActorKind::Predictor => {
                    fleetcast::actors::predictor::spawn_workers(&settings, bus.clone())
                        .await
                        .context("starting the predictor")?;
                }
                ActorKind::Generator => {
                    fleetcast::actors::generator::spawn(&settings, bus.clone())
                        .await
                        .context("starting the generator")?;
                }
                ActorKind::Gateway => {
                    if embed && !settings.gateway.enabled {
                        tracing::info!("gateway disabled (gateway.enabled = false)");
                        continue;
                    }
                    let gateway = fleetcast::actors::gateway::spawn(&settings, bus.clone())
                        .await
                        .context("starting the gateway")?;
                    gateways.push(gateway.addr.clone());
                    eprintln!(
                        "fleetcast: dashboard at http://{}/ (API /api/v1/, metrics /metrics)",
                        gateway.local_addr
                    );
                }
                ActorKind::NodeExporter => {
                    fleetcast::actors::node_exporter::spawn(&settings, bus.clone())
                        .await
                        .context("starting the node_exporter scraper")?;
                }
                ActorKind::RemoteWrite => {
                    fleetcast::actors::remote_write::spawn(&settings, bus.clone())
                        .await
                        .context("starting the remote-write receiver")?;
                }
            }
            tracing::info!(actor = ?actor, "actor started");
        }
        let signal = shutdown_signal().await?;
        tracing::info!(signal, "shutting down");
        for gateway in gateways {
            let _ = gateway.send(fleetcast::actors::gateway::Stop).await;
        }
        // Bounded: with the bus gone, a flush waits for a reconnection that may never come,
        // and the process would not exit.
        if tokio::time::timeout(Duration::from_secs(5), bus.client().flush())
            .await
            .is_err()
        {
            tracing::warn!("the bus did not take the last messages within 5 s: exiting anyway");
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM (what `kill` and service managers send), so the private
/// nats-server is stopped and buffers are flushed either way.
async fn shutdown_signal() -> Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map(|()| "interrupt").map_err(Into::into),
        _ = terminate.recv() => Ok("terminate"),
    }
}
