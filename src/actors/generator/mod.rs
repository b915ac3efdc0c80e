//! The generator actor: a synthetic fleet on a simulated clock, publishing one
//! [`MetricSample`](crate::wire::MetricSample) per server per step.
//!
//! - **Publishes** `metrics.<server>` ([`MetricSample`](crate::wire::MetricSample): all 14 metrics, `profile` set,
//!   `ts_ms` = the step's start in simulated time) and `rejected.generator`
//!   ([`Rejection`](crate::wire::Rejection)) for control requests it cannot read.
//! - **Serves** `control.scenario` ([`ScenarioRequest`] → [`ScenarioReply`](crate::wire::ScenarioReply)): a scenario
//!   name switches the scenario from the next step on and answers with the old and new
//!   scenario, the servers it drives, the step and the fleet size; `status` answers without
//!   changing anything; an unknown name is answered `ok: false` with the valid names
//!   (replies list at most [`MAX_LISTED_SERVERS`] names; `affected_total` counts all). The
//!   endpoint belongs to the stage's NATS micro service `fleetcast-generator` ([the stage
//!   toolkit](crate::actors::stage)), so `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` list and
//!   count it.
//! - **State**: the [`Simulation`] (the engine in [`crate::sim`], shared with `export`), the
//!   scenario as requested ([`control`]), the simulated clock ([`clock`]) and the stage's
//!   counters: `received`/`accepted`/`rejected` count control requests, `published` samples
//!   stored (and replies sent), extra `steps` the steps fully stored; facts `scenario`,
//!   `step`, `servers`.
//! - **Clock**: the first step starts at `generator.start` or, when that is empty, at now
//!   minus `generator.backfill_hours`, either rounded down to a step; but when the metrics
//!   stream already holds a later sample (a previous run's), it resumes one step after it,
//!   backfilling only up to now, so a restarted pipeline sees time move on. The first
//!   `backfill_hours` of steps are published as fast as the `METRICS` stream stores them
//!   (JetStream publishes with a window of acknowledgements, every step stored before the
//!   next is computed, progress logged every 10 %), then one step every
//!   `generator.step_interval_ms` of wall time (0: no pause). Steps are computed on the
//!   blocking pool (big fleets on several threads) and encoded there too, so the actix
//!   thread only publishes.
//! - **Failure**: a failed publish, or a sample the stream did not acknowledge, is counted
//!   (`publish_errors`) and logged (rate-limited) and the clock goes on; a bad control
//!   request is rejected and counted. `spawn` fails before starting when the settings cannot
//!   make a fleet or the service cannot subscribe. With `generator.enabled = false` the
//!   actor starts idle: no clock, no scenario endpoint (its service reports it).
//! - **Ground truth** (`generator.labels_file`): every episode of trouble it simulates, with
//!   its first crossings of the catalog's thresholds lifted by
//!   `alerts.profile_normal_sigmas` (what `fleetcast export --labels` writes), rewritten
//!   whole every simulated hour and when the clock stops; a failed write is logged.
//! - **Drain** ([`Drain`]): the clock stops after the step in hand (every sample of it
//!   stored) and the labels file is written, the service stops answering, the outbox is
//!   flushed, then the actor stops.

pub mod clock;
pub mod control;

pub use control::MAX_LISTED_SERVERS;

use crate::actors::stage::{
    self, Drain, ServiceError, Stage, StageHandle, StageSpec, Staged, Stop,
};
use crate::bus::{Bus, headers};
use crate::settings::Settings;
use crate::sim::{CATALOG_THRESHOLDS, SimConfig, SimError, Simulation};
use crate::subjects::StreamKind;
use crate::wire::{self, ScenarioRequest};
use actix::fut::wrap_future;
use actix::prelude::*;
use async_nats::service;
use bytes::Bytes;
use clock::{Clock, LabelsOut, run_clock};
use control::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// The stage name in `rejected.<stage>` and logs.
pub const STAGE: &str = "generator";

/// The generator actor.
pub struct Generator {
    stage: Stage,
    shared: Arc<Shared>,
    clock: Option<Clock>,
    /// Set to `true` to stop the clock after the step in hand.
    stop_clock: watch::Sender<bool>,
    /// Resolves when the clock has stopped (`None` once taken, or without a clock).
    clock_stopped: Option<oneshot::Receiver<()>>,
}

/// Why the generator could not start.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The settings do not make a fleet.
    #[error("generator settings")]
    Simulation(#[from] SimError),
    /// The NATS micro service or its endpoint could not start.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Time of the newest sample in the metrics stream, if the stream has one (a previous run's).
async fn last_published_ms(bus: &Bus) -> Option<i64> {
    let name = bus.subjects().stream_name(StreamKind::Metrics);
    let stream = bus.jetstream().get_stream(&name).await.ok()?;
    let info = stream.get_info().await.ok()?;
    if info.state.messages == 0 {
        return None;
    }
    let message = stream
        .get_raw_message(info.state.last_sequence)
        .await
        .ok()?;
    wire::decode::<wire::MetricSample>(&message.payload)
        .ok()
        .map(|sample| sample.ts_ms)
}

/// The first step's start and how many steps to backfill: `generator.start` when set, else
/// now minus the backfill, unless the metrics stream holds a later sample, after which it
/// resumes.
async fn clock_start(settings: &Settings, bus: &Bus) -> (i64, u64) {
    let generator = &settings.generator;
    let step_seconds = settings.time.step_seconds;
    let step_ms = i64::from(step_seconds) * 1000;
    let full_backfill = u64::from(generator.backfill_hours) * 3600 / u64::from(step_seconds);
    if let Some(start) = generator.start {
        return (start.timestamp_millis(), full_backfill);
    }
    let now_ms = wire::now_ms();
    let backfill_start = now_ms - i64::from(generator.backfill_hours) * 3_600_000;
    match last_published_ms(bus).await {
        // Continue after the previous run's last step, so the window keeper (which rebuilds
        // its windows from the stream) sees time move on, not jump back.
        Some(last_ms) if last_ms + step_ms > backfill_start => {
            let resume_ms = last_ms + step_ms;
            let steps_to_now = u64::try_from((now_ms - resume_ms) / step_ms).unwrap_or(0);
            tracing::info!(
                last = %chrono::DateTime::from_timestamp_millis(last_ms).unwrap_or_default(),
                backfill_steps = steps_to_now,
                "resuming after the last sample in the metrics stream"
            );
            (resume_ms, steps_to_now)
        }
        _ => (backfill_start, full_backfill),
    }
}

/// Builds the fleet from the settings, the stage with its control endpoint, then starts the
/// generator on the current actix system.
///
/// # Errors
/// [`GeneratorError`] when the settings cannot make a fleet or the service cannot start;
/// nothing has been published then.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<Generator>, GeneratorError> {
    let generator = &settings.generator;
    let (start_ms, backfill_steps) = clock_start(settings, &bus).await;
    let step_ms = i64::from(settings.time.step_seconds) * 1000;
    let config = SimConfig {
        servers: generator.servers,
        seed: generator.seed,
        step_seconds: settings.time.step_seconds,
        problem_child_share: generator.problem_child_share,
        start_ms: start_ms - start_ms.rem_euclid(step_ms),
        scenario: generator.scenario,
    };
    let mut simulation = tokio::task::spawn_blocking(move || Simulation::new(&config))
        .await
        .expect("fleet construction does not panic")?;
    let labels = generator.labels_file.clone().map(|path| {
        simulation.record_labels(&CATALOG_THRESHOLDS, settings.alerts.profile_normal_sigmas);
        LabelsOut {
            path,
            seed: generator.seed,
            every_steps: u64::from(3600 / settings.time.step_seconds).max(1),
        }
    });
    let mut spec = StageSpec::new(
        STAGE,
        "fleetcast synthetic fleet: publishes metrics, serves scenario control",
    )
    .extras(&["steps"]);
    if generator.enabled {
        spec = spec.endpoint("scenario", bus.subjects().control_scenario());
    }
    let stage = Stage::build(&bus, spec).await?;
    let facts = stage.facts();
    facts.set("enabled", generator.enabled);
    facts.set("servers", generator.servers);
    facts.set("scenario", generator.scenario);
    let shared = Arc::new(Shared::new(&simulation));
    let (stop_clock, stop) = watch::channel(false);
    let (stopped, clock_stopped) = oneshot::channel();
    let clock = generator.enabled.then(|| Clock {
        subjects: Arc::new(
            simulation
                .servers()
                .iter()
                .map(|spec| bus.subjects().metrics(&spec.name))
                .collect(),
        ),
        simulation: Box::new(simulation),
        backfill_steps,
        interval: Duration::from_millis(generator.step_interval_ms),
        outbox: stage.outbox().clone(),
        steps: stage.counters().extra("steps"),
        facts: stage.facts().clone(),
        stop,
        stopped,
        labels,
    });
    if let Some(clock) = &clock {
        tracing::info!(
            servers = generator.servers,
            seed = generator.seed,
            scenario = %generator.scenario,
            backfill_steps,
            step_interval_ms = generator.step_interval_ms,
            start = %chrono::DateTime::from_timestamp_millis(clock.simulation.step_start_ms(0)).unwrap_or_default(),
            "generator starting"
        );
    } else {
        tracing::info!("generator disabled (generator.enabled = false): not publishing");
    }
    let actor = Generator {
        clock_stopped: clock.is_some().then_some(clock_stopped),
        stage,
        shared,
        clock,
        stop_clock,
    };
    Ok(stage::start(actor))
}

impl Staged for Generator {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Actor for Generator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(endpoint) = self.stage.take_endpoint("scenario") {
            ctx.add_stream(endpoint);
        }
        if let Some(clock) = self.clock.take() {
            ctx.spawn(wrap_future(run_clock(clock, self.shared.clone())));
        }
    }
}

impl StreamHandler<service::Request> for Generator {
    fn handle(&mut self, request: service::Request, ctx: &mut Self::Context) {
        let counters = self.stage.counters().clone();
        counters.received();
        let subject = request.message.subject.to_string();
        let reply = match wire::decode::<ScenarioRequest>(&request.message.payload) {
            Ok(scenario_request) => {
                let reply = self.shared.answer(&scenario_request.scenario);
                if reply.ok {
                    counters.accepted();
                } else {
                    let reason = reply.error.clone().unwrap_or_default();
                    let reject =
                        crate::actors::stage::Reject::new(wire::RejectKind::BadContent, reason);
                    self.stage.reject(ctx, &subject, reject);
                }
                reply
            }
            Err(error) => {
                let mut reply = self.shared.answer("status");
                reply.ok = false;
                reply.error = Some(format!("cannot read the request: {error}"));
                self.stage.reject(ctx, &subject, error.into());
                reply
            }
        };
        if reply.ok && reply.old_scenario != reply.new_scenario {
            tracing::info!(
                old = %reply.old_scenario,
                new = %reply.new_scenario,
                affected = reply.affected_total,
                step = reply.step,
                "scenario switched"
            );
            self.stage.facts().set("scenario", &reply.new_scenario);
        }
        let payload = Bytes::from(wire::encode(&reply));
        ctx.spawn(wrap_future(async move {
            match request.respond_with_headers(Ok(payload), headers()).await {
                Ok(()) => counters.published(1),
                Err(error) => {
                    counters.publish_errors(1);
                    tracing::warn!(%error, "cannot answer a scenario request");
                }
            }
        }));
    }

    fn finished(&mut self, _: &mut Self::Context) {
        if !*self.stop_clock.borrow() {
            tracing::warn!("scenario endpoint closed: control requests are no longer served");
        }
    }
}

impl Handler<Drain> for Generator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        let _ = self.stop_clock.send(true);
        let clock_stopped = self.clock_stopped.take();
        stage::drain(
            async move {
                if let Some(stopped) = clock_stopped {
                    let _ = stopped.await;
                }
            },
            |_, _| {},
        )
    }
}

impl Handler<Stop> for Generator {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
