//! The `fleetcast` command: run the pipeline and its dashboard (`up`) or one actor (`run`), see what runs
//! (`status`), watch subjects (`tail`), steer the simulation (`scenario`), export training
//! data (`export`) and switch the predictors' model (`model load`).
//!
//! Thin: it parses arguments, sets up logging, loads settings and calls the library; every
//! failure is one `error:` line on stderr and one of the exit codes below.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use fleetcast::bus::{Bus, BusError, RequestError};
use fleetcast::pipeline::{self, ActorKind, Embed};
use fleetcast::settings::{BusRole, Settings, SettingsError};
use fleetcast::sim::Scenario;
use fleetcast::wire::{
    ModelLoadReply, ModelLoadRequest, SCHEMA_VERSION, ScenarioReply, ScenarioRequest,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes, as `--help` and the README list them.
mod exit {
    /// The command failed for another reason.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap uses 2 too).
    pub const USAGE: u8 = 2;
    /// The settings cannot be read or are invalid.
    pub const SETTINGS: u8 = 3;
    /// Nothing answered: no nats-server, or no stage to take the request.
    pub const UNANSWERED: u8 = 4;
    /// The request was answered with a refusal.
    pub const REFUSED: u8 = 5;
}

const EXIT_CODES: &str = "Exit codes: 0 success (also after SIGINT/SIGTERM drained `up` or `run`), \
1 failure, 2 wrong command line, 3 invalid settings, 4 nothing answered (no nats-server, or no \
generator, predictor or stage running), 5 request refused (unknown scenario, model that does not \
fit).";

/// Predictive monitoring for server fleets: a Temporal Fusion Transformer on ONNX Runtime
/// behind NATS actors.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// Settings file (TOML). Default: ./fleetcast.toml when it exists. Every key can be
    /// overridden by FLEETCAST_<SECTION>__<KEY>, e.g. FLEETCAST_GENERATOR__SERVERS=500.
    #[arg(long, short, global = true, env = "FLEETCAST_CONFIG")]
    config: Option<PathBuf>,
    /// More log output: client commands log warnings only unless -v (info) or -vv (debug);
    /// `up`, `run` and `export` log at log.level, or debug with -v.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every actor in one process. Starts a private nats-server (JetStream on, data in
    /// nats.data_dir) when nothing answers at a loopback nats.url. SIGINT or SIGTERM drains
    /// every stage and exits 0 within 10 s.
    Up,
    /// Run one actor as its own process (run several to scale out). SIGINT or SIGTERM
    /// drains it.
    Run {
        /// Which actor.
        actor: ActorArg,
    },
    /// Every running stage instance with its counters, each JetStream consumer's pending
    /// count and the streams' sizes.
    Status(fleetcast::status::StatusArgs),
    /// Print every message on a subject as one JSON line, e.g. tail 'fleetcast.metrics.>'.
    Tail(fleetcast::tail::TailArgs),
    /// Switch the running generator's scenario and say what changed.
    Scenario {
        /// healthy, natural, degrading, critical or cascade; `status` only asks.
        scenario: String,
        /// Print the generator's whole reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the generator offline at full speed and write training data as Parquet.
    Export(fleetcast::export::ExportArgs),
    /// Measure alerts against the simulation's ground truth.
    Evaluate {
        #[command(subcommand)]
        command: EvaluateCommand,
    },
    /// Forecast from a history file (CSV or Parquet) with the model, no bus needed: p10/p50/p90
    /// per server, metric, origin and step, written as CSV or Parquet.
    Forecast(fleetcast::offline::forecast::ForecastArgs),
    /// Score the model on a history file against persistence and seasonal naive, per lead-time
    /// band (prints a table; --json writes it).
    Backtest(fleetcast::offline::backtest::BacktestArgs),
    /// Check a settings file and print the settings in effect as JSON (passwords as ***).
    Config,
    /// Create (or update) the JetStream streams and exit, as the `admin` user when one is
    /// set: what a deployment whose actors run under least-privilege users does once.
    Streams,
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

#[derive(Debug, Subcommand)]
enum EvaluateCommand {
    /// Simulate a stretch of fleet at full speed (default 14 days x 90 servers after a day of
    /// warm-up), run fleetcast's alerting and two baselines (static thresholds, predict_linear)
    /// on the same samples and score each against the ground truth: recall, precision, lead
    /// time, false alerts per server-day, flapping, time to resolve.
    Alerts(fleetcast::evaluate::EvaluateArgs),
}

/// The actors that `run` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ActorArg {
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

impl From<ActorArg> for ActorKind {
    fn from(actor: ActorArg) -> ActorKind {
        match actor {
            ActorArg::Generator => ActorKind::Generator,
            ActorArg::WindowKeeper => ActorKind::WindowKeeper,
            ActorArg::Predictor => ActorKind::Predictor,
            ActorArg::RiskScorer => ActorKind::RiskScorer,
            ActorArg::AlertRouter => ActorKind::AlertRouter,
            ActorArg::Gateway => ActorKind::Gateway,
            ActorArg::NodeExporter => ActorKind::NodeExporter,
            ActorArg::RemoteWrite => ActorKind::RemoteWrite,
        }
    }
}

/// A wrong argument found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// A request answered with a refusal (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Nobody there to answer (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unanswered(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The exit code for `error`, from the first cause in its chain that decides one.
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<Usage>() {
            return exit::USAGE;
        }
        if cause.is::<SettingsError>() {
            return exit::SETTINGS;
        }
        if cause.is::<Refused>() {
            return exit::REFUSED;
        }
        if cause.is::<Unanswered>()
            || matches!(cause.downcast_ref(), Some(BusError::Connect { .. }))
        {
            return exit::UNANSWERED;
        }
        if let Some(request) = cause.downcast_ref::<RequestError>() {
            return if request.is_unanswered() {
                exit::UNANSWERED
            } else {
                exit::FAILURE
            };
        }
    }
    exit::FAILURE
}

/// The settings file in use: `--config`, else `./fleetcast.toml` when present.
fn settings_path(path: Option<PathBuf>) -> Option<PathBuf> {
    path.or_else(|| {
        let default = PathBuf::from("fleetcast.toml");
        default.is_file().then_some(default)
    })
}

fn load_settings(path: Option<PathBuf>) -> Result<Settings> {
    let path = settings_path(path);
    Settings::load(path.as_deref()).with_context(|| match &path {
        Some(path) => format!("settings from {}", path.display()),
        None => "settings from the environment".to_string(),
    })
}

/// Logs to stderr: `RUST_LOG` when set, else `level`.
fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `evaluate alerts --variant NAME:KEY=VALUE[,KEY=VALUE...]`: the settings with the
/// variant's overrides.
fn variant_settings(path: Option<&std::path::Path>, variant: &str) -> Result<(String, Settings)> {
    let usage = || {
        Usage(format!(
            "--variant `{variant}`: expected NAME:KEY=VALUE[,KEY=VALUE...]"
        ))
    };
    let (name, overrides) = variant.split_once(':').ok_or_else(usage)?;
    let overrides = overrides
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(usage)?;
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect::<Result<Vec<_>, Usage>>()?;
    let settings = Settings::load_with(path, &overrides)
        .with_context(|| format!("settings of variant `{name}`"))?;
    Ok((name.to_string(), settings))
}

fn run(cli: Cli) -> Result<()> {
    let config_path = settings_path(cli.config.clone());
    let settings = load_settings(cli.config)?;
    let long_running = matches!(
        cli.command,
        Command::Up
            | Command::Run { .. }
            | Command::Export(_)
            | Command::Forecast(_)
            | Command::Backtest(_)
    );
    let level = match (long_running, cli.verbose) {
        (true, 0) => settings.log.level.as_str(),
        (true, _) | (false, 2..) => "debug",
        (false, 1) => "info",
        (false, 0) => "warn",
    };
    init_tracing(level);
    match cli.command {
        Command::Export(mut args) => {
            args.profile_normal_sigmas = settings.alerts.profile_normal_sigmas;
            fleetcast::export::run(&args).context("export")?;
            Ok(())
        }
        Command::Evaluate {
            command: EvaluateCommand::Alerts(mut args),
        } => {
            args.profile_normal_sigmas = settings.alerts.profile_normal_sigmas;
            let mut detectors = Vec::new();
            if !args.baselines_only {
                let variants = args
                    .variants
                    .iter()
                    .map(|variant| variant_settings(config_path.as_deref(), variant))
                    .collect::<Result<Vec<_>>>()?;
                let pipeline = fleetcast::evaluate::PipelineDetector::build(&settings, &variants)
                    .context("evaluate alerts: loading the model")?;
                detectors.push(Box::new(pipeline) as Box<dyn fleetcast::evaluate::Detector>);
            }
            detectors.extend(fleetcast::evaluate::harness::baselines(&args));
            let report =
                fleetcast::evaluate::evaluate(&args, &mut detectors).context("evaluate alerts")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
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
            let actors = ActorKind::for_up(&settings);
            serve(settings, actors, Embed::WhenAbsent)
        }
        Command::Run { actor } => serve(settings, vec![actor.into()], Embed::Never),
        Command::Streams => client(async move {
            let bus = Bus::connect(&settings.nats).await?;
            bus.ensure_streams().await?;
            eprintln!("fleetcast: streams ready");
            Ok(())
        }),
        Command::Status(args) => client(async move {
            let bus = Bus::connect_as(&settings.nats, BusRole::Client).await?;
            fleetcast::status::run(&bus, &args, &mut std::io::stdout().lock())
                .await
                .map_err(|error| match error {
                    fleetcast::status::StatusError::NoStages => {
                        anyhow::Error::new(Unanswered(error.to_string()))
                    }
                    other => other.into(),
                })
        }),
        Command::Tail(args) => client(async move {
            let bus = Bus::connect_as(&settings.nats, BusRole::Client).await?;
            fleetcast::tail::run(&bus, &args, &mut std::io::stdout().lock()).await?;
            Ok(())
        }),
        Command::Scenario { scenario, json } => {
            if scenario != "status" && scenario.parse::<Scenario>().is_err() {
                return Err(Usage(format!(
                    "unknown scenario `{scenario}`; valid: {} (or `status`)",
                    Scenario::ALL.map(Scenario::name).join(", ")
                ))
                .into());
            }
            client(switch_scenario(settings, scenario, json))
        }
        Command::Model {
            command: ModelCommand::Load { dir, timeout },
        } => client(load_model(settings, dir, timeout)),
    }
}

/// Runs a client command on a small runtime of its own.
fn client(future: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

async fn switch_scenario(settings: Settings, scenario: String, json: bool) -> Result<()> {
    let bus = Bus::connect_as(&settings.nats, BusRole::Operator).await?;
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
        .context("is a generator running? (`fleetcast up` or `fleetcast run generator`)")?;
    if !reply.ok {
        return Err(Refused(format!(
            "scenario refused: {}",
            reply.error.unwrap_or_default()
        ))
        .into());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else if reply.old_scenario == reply.new_scenario {
        println!(
            "scenario {} since step {}: {} of {} servers driven",
            reply.new_scenario, reply.step, reply.affected_total, reply.fleet_size
        );
    } else {
        println!(
            "scenario {} -> {} from step {}: {} of {} servers driven",
            reply.old_scenario,
            reply.new_scenario,
            reply.step,
            reply.affected_total,
            reply.fleet_size
        );
    }
    Ok(())
}

async fn load_model(settings: Settings, dir: PathBuf, timeout: f64) -> Result<()> {
    let bus = Bus::connect_as(&settings.nats, BusRole::Operator).await?;
    let request = ModelLoadRequest {
        v: SCHEMA_VERSION,
        path: dir.to_string_lossy().into_owned(),
    };
    let replies: Vec<ModelLoadReply> = bus
        .request_all(
            bus.subjects().control_model_load(),
            &request,
            Duration::from_secs_f64(timeout),
            Duration::from_secs(1),
        )
        .await?;
    for reply in &replies {
        println!("{}", serde_json::to_string(reply)?);
    }
    if replies.is_empty() {
        return Err(Unanswered(
            "no predictor worker answered (`fleetcast run predictor` starts one)".into(),
        )
        .into());
    }
    let refused = replies.iter().filter(|reply| !reply.ok).count();
    if refused > 0 {
        return Err(Refused(format!(
            "{refused} of {} workers refused the model (they keep serving the old one)",
            replies.len()
        ))
        .into());
    }
    Ok(())
}

/// Runs `actors` on an actix system until SIGINT or SIGTERM, then drains them. A second
/// signal during the drain exits at once (code 130).
fn serve(settings: Settings, actors: Vec<ActorKind>, embed: Embed) -> Result<()> {
    let system = actix::System::new();
    system.block_on(async move {
        // Listen before anything starts, so a signal during start-up drains too.
        let mut signals = Signals::listen()?;
        let shutdown = async move {
            let signal = signals.next().await;
            tracing::info!(signal, "shutting down");
            tokio::spawn(async move {
                signals.next().await;
                eprintln!("error: second signal: exiting without finishing the drain");
                std::process::exit(130);
            });
        };
        pipeline::run(&settings, &actors, embed, shutdown, |running| {
            if let Some(gateway) = &running.gateway {
                eprintln!(
                    "fleetcast: dashboard at http://{}/ (API /api/v1/, metrics /metrics)",
                    gateway.local_addr
                );
            }
        })
        .await?;
        anyhow::Ok(())
    })
}

/// SIGINT (Ctrl-C) and SIGTERM (what `kill` and service managers send).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupt",
            _ = self.terminate.recv() => "terminate",
        }
    }
}
