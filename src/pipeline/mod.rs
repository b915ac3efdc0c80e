//! The one start-up path: which actors run, in which order, and how they stop. The binary
//! (`up`, `run`), the end-to-end tests and the benches all start the pipeline here.
//!
//! - **Start** ([`start`]): the streams are created, then the actors start last to first
//!   (alert router, risk scorer, predictor workers, window keeper, generator, then the
//!   enabled inputs: remote-write receiver, node_exporter scraper), so every
//!   consumer listens before its producer publishes. Each actor's `spawn` fails before it
//!   starts when something it needs is missing; the first failure stops the start-up.
//! - **Stop** ([`Pipeline::drain`]): the stages drain in pipeline order (the generator
//!   finishes its step, then each consumer takes what is already on its way, acknowledges,
//!   flushes; the gateway last, so it serves until the others are done), each within what
//!   is left of one deadline.
//! - **Run** ([`run`]): connect (or start a private nats-server), start, wait for the
//!   shutdown signal, drain, stop the private server. What `fleetcast up` and `fleetcast run
//!   <actor>` do.

use crate::actors::alert_router::{self, AlertRouter, AlertRouterError};
use crate::actors::gateway::{self, Gateway, GatewayError};
use crate::actors::generator::{self, Generator, GeneratorError};
use crate::actors::node_exporter::{self, NodeExporter, NodeExporterError};
use crate::actors::predictor::{self, Predictor, PredictorError};
use crate::actors::remote_write::{self, RemoteWrite, RemoteWriteError};
use crate::actors::risk_scorer::{self, RiskScorer, RiskScorerError};
use crate::actors::stage::{Drain, RunningStage, StageHandle};
use crate::actors::window_keeper::{self, WindowKeeper, WindowKeeperError};
use crate::bus::{self, Bus, BusError, NatsServer};
use crate::settings::{BusRole, Settings};
use std::time::{Duration, Instant};

/// How long a drain may take in all, leaving time inside the 10 s a service manager allows
/// for stopping the private nats-server.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(6);

/// How long the last flush after the drain may wait for the bus.
const FINAL_FLUSH_WITHIN: Duration = Duration::from_secs(2);

/// The actors, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActorKind {
    /// The node_exporter scraper (`[node_exporter]`).
    NodeExporter,
    /// The Prometheus remote-write receiver (`[remote_write]`).
    RemoteWrite,
    /// The synthetic fleet.
    Generator,
    /// Per-server windows and predict jobs.
    WindowKeeper,
    /// Forecasts on ONNX Runtime (`predictor.workers` of them).
    Predictor,
    /// Risk per server, and the fleet summary.
    RiskScorer,
    /// Alerts with hysteresis.
    AlertRouter,
    /// The HTTP API, push updates, `/metrics` and the dashboard (`[gateway]`).
    Gateway,
}

impl ActorKind {
    /// Every actor, in pipeline order.
    pub const ALL: [ActorKind; 5] = [
        ActorKind::Generator,
        ActorKind::WindowKeeper,
        ActorKind::Predictor,
        ActorKind::RiskScorer,
        ActorKind::AlertRouter,
    ];

    /// The input actors `up` starts when their section says `enabled = true`.
    pub const INPUTS: [ActorKind; 2] = [ActorKind::NodeExporter, ActorKind::RemoteWrite];

    /// What `fleetcast up` runs: the enabled inputs, every actor of [`ActorKind::ALL`] and
    /// the gateway unless `gateway.enabled = false`.
    pub fn for_up(settings: &Settings) -> Vec<ActorKind> {
        let mut actors: Vec<ActorKind> = ActorKind::INPUTS
            .into_iter()
            .filter(|input| match input {
                ActorKind::NodeExporter => settings.node_exporter.enabled,
                ActorKind::RemoteWrite => settings.remote_write.enabled,
                _ => false,
            })
            .collect();
        actors.extend(ActorKind::ALL);
        if settings.gateway.enabled {
            actors.push(ActorKind::Gateway);
        }
        actors
    }

    /// Its user on the bus (`[nats.users.<role>]`, `nats/auth.conf`).
    pub fn role(self) -> BusRole {
        match self {
            ActorKind::NodeExporter => BusRole::NodeExporter,
            ActorKind::RemoteWrite => BusRole::RemoteWrite,
            ActorKind::Generator => BusRole::Generator,
            ActorKind::WindowKeeper => BusRole::WindowKeeper,
            ActorKind::Predictor => BusRole::Predictor,
            ActorKind::RiskScorer => BusRole::RiskScorer,
            ActorKind::AlertRouter => BusRole::AlertRouter,
            ActorKind::Gateway => BusRole::Gateway,
        }
    }

    /// The name on the command line (`window-keeper`).
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::NodeExporter => "node-exporter",
            ActorKind::RemoteWrite => "remote-write",
            ActorKind::Generator => "generator",
            ActorKind::WindowKeeper => "window-keeper",
            ActorKind::Predictor => "predictor",
            ActorKind::RiskScorer => "risk-scorer",
            ActorKind::AlertRouter => "alert-router",
            ActorKind::Gateway => "gateway",
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The bus is unusable (no server, no JetStream).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The generator could not start.
    #[error("starting the generator")]
    Generator(#[from] GeneratorError),
    /// The window keeper could not start.
    #[error("starting the window keeper")]
    WindowKeeper(#[from] WindowKeeperError),
    /// A predictor worker could not start.
    #[error("starting the predictor")]
    Predictor(#[from] PredictorError),
    /// The risk scorer could not start.
    #[error("starting the risk scorer")]
    RiskScorer(#[from] RiskScorerError),
    /// The alert router could not start.
    #[error("starting the alert router")]
    AlertRouter(#[from] AlertRouterError),
    /// The gateway could not start.
    #[error("starting the gateway")]
    Gateway(#[from] GatewayError),
    /// The node_exporter scraper could not start.
    #[error("starting the node_exporter scraper")]
    NodeExporter(#[from] NodeExporterError),
    /// The remote-write receiver could not start.
    #[error("starting the remote-write receiver")]
    RemoteWrite(#[from] RemoteWriteError),
}

/// The running actors.
pub struct Pipeline {
    /// The node_exporter scraper, when started.
    pub node_exporter: Option<StageHandle<NodeExporter>>,
    /// The remote-write receiver, when started.
    pub remote_write: Option<StageHandle<RemoteWrite>>,
    /// The generator, when started.
    pub generator: Option<StageHandle<Generator>>,
    /// The window keeper, when started.
    pub window_keeper: Option<StageHandle<WindowKeeper>>,
    /// The predictor workers.
    pub predictors: Vec<StageHandle<Predictor>>,
    /// The risk scorer, when started.
    pub risk_scorer: Option<StageHandle<RiskScorer>>,
    /// The alert router, when started.
    pub alert_router: Option<StageHandle<AlertRouter>>,
    /// The gateway, when started.
    pub gateway: Option<Gateway>,
    /// Every stage instance, in pipeline order.
    stages: Vec<RunningStage>,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Stage instances that drained in time.
    pub drained: Vec<String>,
    /// Stage instances that did not finish within the deadline.
    pub late: Vec<String>,
    /// Stage instances that cannot drain yet (they stop with the process).
    pub undrainable: Vec<String>,
}

/// Creates the streams (on `bus`) and starts `actors` on the current actix system, last to
/// first. An actor whose role has credentials (`[nats.users.<role>]`) runs on a connection
/// of its own as that user; the others share `bus`.
///
/// # Errors
/// [`PipelineError`] naming the first actor that could not start.
pub async fn start(
    settings: &Settings,
    bus: &Bus,
    actors: &[ActorKind],
) -> Result<Pipeline, PipelineError> {
    bus.ensure_streams().await?;
    let mut pipeline = Pipeline {
        node_exporter: None,
        remote_write: None,
        generator: None,
        window_keeper: None,
        predictors: Vec::new(),
        risk_scorer: None,
        alert_router: None,
        gateway: None,
        stages: Vec::new(),
    };
    let mut started: Vec<(ActorKind, Vec<RunningStage>)> = Vec::new();
    let mut order = actors.to_vec();
    order.sort_unstable();
    order.dedup();
    for actor in order.into_iter().rev() {
        // With credentials for its role, each actor gets a connection of its own as its user.
        let bus = &bus.for_role(&settings.nats, actor.role()).await?;
        let stages = match actor {
            ActorKind::Gateway => {
                let gateway = gateway::spawn(settings, bus.clone()).await?;
                let running = vec![gateway.stage.running()];
                pipeline.gateway = Some(gateway);
                running
            }
            ActorKind::AlertRouter => {
                let handle = alert_router::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.alert_router = Some(handle);
                running
            }
            ActorKind::RiskScorer => {
                let handle = risk_scorer::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.risk_scorer = Some(handle);
                running
            }
            ActorKind::Predictor => {
                let workers = predictor::spawn_workers(settings, bus.clone()).await?;
                let running = workers.iter().map(StageHandle::running).collect();
                pipeline.predictors = workers;
                running
            }
            ActorKind::WindowKeeper => {
                let handle = window_keeper::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.window_keeper = Some(handle);
                running
            }
            ActorKind::Generator => {
                let handle = generator::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.generator = Some(handle);
                running
            }
            ActorKind::NodeExporter => {
                let handle = node_exporter::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.node_exporter = Some(handle);
                running
            }
            ActorKind::RemoteWrite => {
                let handle = remote_write::spawn(settings, bus.clone()).await?;
                let running = vec![handle.running()];
                pipeline.remote_write = Some(handle);
                running
            }
        };
        tracing::info!(actor = actor.name(), "actor started");
        started.push((actor, stages));
    }
    started.reverse();
    pipeline.stages = started.into_iter().flat_map(|(_, stages)| stages).collect();
    Ok(pipeline)
}

impl Pipeline {
    /// Every stage instance, in pipeline order.
    pub fn stages(&self) -> &[RunningStage] {
        &self.stages
    }

    /// Drains every stage in pipeline order, each within what is left of `within`.
    pub async fn drain(self, within: Duration) -> DrainReport {
        let deadline = Instant::now() + within;
        let mut report = DrainReport::default();
        for stage in &self.stages {
            let name = format!("{}/{}", stage.identity.stage, stage.identity.instance);
            let Some(drain) = &stage.drain else {
                report.undrainable.push(name);
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, drain.send(Drain)).await {
                Ok(_) => report.drained.push(name),
                Err(_) => {
                    tracing::warn!(stage = %name, "did not drain in time");
                    report.late.push(name);
                }
            }
        }
        report
    }
}

/// How [`run`] reaches the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embed {
    /// Start a private nats-server when nothing answers at a loopback URL (`up`).
    WhenAbsent,
    /// Only connect (`run <actor>`).
    Never,
}

/// Who `run <actor>` checks the streams as: `admin` when it has credentials (it creates
/// missing streams), else the one actor's own user (it may only read that they exist).
fn setup_role(settings: &Settings, actors: &[ActorKind]) -> BusRole {
    match actors {
        [actor] if settings.nats.user(BusRole::Admin).is_none() => actor.role(),
        _ => BusRole::Admin,
    }
}

/// Runs `actors` until `shutdown` resolves, then drains them: connects (or, with
/// [`Embed::WhenAbsent`], starts a private nats-server), starts the pipeline, calls `started`
/// with it (the binary prints the dashboard's address), waits, drains
/// within [`DRAIN_WITHIN`], and stops the private server. Must run inside an actix system.
///
/// # Errors
/// [`PipelineError`] when the bus or an actor cannot start.
pub async fn run(
    settings: &Settings,
    actors: &[ActorKind],
    embed: Embed,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(&Pipeline),
) -> Result<DrainReport, PipelineError> {
    let (bus, server): (Bus, Option<NatsServer>) = match embed {
        Embed::WhenAbsent => bus::connect_or_embed(&settings.nats).await?,
        Embed::Never => (
            Bus::connect_as(&settings.nats, setup_role(settings, actors)).await?,
            None,
        ),
    };
    let pipeline = start(settings, &bus, actors).await?;
    started(&pipeline);
    tracing::info!(
        stages = pipeline.stages().len(),
        "pipeline running; SIGINT or SIGTERM drains it"
    );
    shutdown.await;
    let started = Instant::now();
    tracing::info!("draining");
    let report = pipeline.drain(DRAIN_WITHIN).await;
    // Bounded: with the bus gone, a flush waits for a reconnection that may never come, and
    // the process would not exit.
    if tokio::time::timeout(FINAL_FLUSH_WITHIN, bus.client().flush())
        .await
        .is_err()
    {
        tracing::warn!("the bus did not take the last messages in time: exiting anyway");
    }
    tracing::info!(
        drained = report.drained.len(),
        late = report.late.len(),
        undrainable = report.undrainable.len(),
        seconds = started.elapsed().as_secs_f64(),
        "pipeline stopped"
    );
    drop(server);
    Ok(report)
}
