//! The generator actor: a synthetic fleet on a simulated clock, publishing one
//! [`MetricSample`] per server per step.
//!
//! - **Publishes** `metrics.<server>` ([`MetricSample`]: all 14 metrics, `profile` set,
//!   `ts_ms` = the step's start in simulated time) and `rejected.generator`
//!   ([`Rejection`]) for control requests it cannot read.
//! - **Serves** `control.scenario` ([`ScenarioRequest`] → [`ScenarioReply`]): a scenario
//!   name switches the scenario from the next step on and answers with the old and new
//!   scenario, the servers it drives, the step and the fleet size; `status` answers without
//!   changing anything; an unknown name is answered `ok: false` with the valid names
//!   (replies list at most [`MAX_LISTED_SERVERS`] names; `affected_total` counts all). The
//!   endpoint belongs to the NATS micro service `fleetcast-generator`, so `$SRV.PING`,
//!   `$SRV.INFO` and `$SRV.STATS` list and count it.
//! - **State**: the [`fleet::Fleet`] (simulation in [`fleet`], numbers in `model`), the
//!   simulated clock and the counters ([`GetCounters`]).
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
//! - **Failure**: a failed publish, or a sample the stream did not acknowledge, is counted and
//!   logged (rate-limited) and the clock goes on; a bad control request is rejected and counted. The actor stops only when its
//!   system stops. `spawn` fails before starting when the settings cannot make a fleet or
//!   the service endpoint cannot subscribe. With `generator.enabled = false` the actor
//!   starts idle: no clock, no endpoint.

pub mod fleet;
mod model;

pub use fleet::{
    Fleet, FleetConfig, FleetError, FleetLayout, IncidentKind, Row, Scenario, ServerSpec,
};
pub use model::State;

use crate::bus::{self, Bus, STREAM_PUBLISH_WINDOW, StreamPublisher};
use crate::catalog::Metric;
use crate::settings::{SCENARIOS, Settings};
use crate::subjects::StreamKind;
use crate::wire::{
    self, MetricSample, RejectKind, Rejection, SCHEMA_VERSION, ScenarioReply, ScenarioRequest,
};
use actix::fut::wrap_future;
use actix::prelude::*;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The stage name in `rejected.<stage>` and logs.
pub const STAGE: &str = "generator";

/// Most server names a scenario reply lists, so it stays well inside NATS's 1 MB payload
/// limit at 100,000 servers.
pub const MAX_LISTED_SERVERS: usize = 10_000;

/// The generator actor.
pub struct Generator {
    bus: Bus,
    shared: Arc<Shared>,
    /// Kept alive: dropping the service would stop its `$SRV` handlers.
    _service: Option<service::Service>,
    endpoint: Option<service::endpoint::Endpoint>,
    clock: Option<Clock>,
}

/// What the clock loop needs; moved into it when the actor starts.
struct Clock {
    fleet: Box<Fleet>,
    backfill_steps: u64,
    interval: Duration,
}

/// State shared by the actor (control requests) and its clock loop.
struct Shared {
    layout: Arc<FleetLayout>,
    control: Mutex<Control>,
    counters: Counters,
}

/// The scenario as requested; the clock applies `pending` before its next step.
struct Control {
    scenario: Scenario,
    affected: Vec<u32>,
    pending: Vec<Scenario>,
    next_step: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    steps: AtomicU64,
}

/// The generator's counters, as [`GetCounters`] returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct GeneratorCounters {
    /// Control requests received.
    pub received: u64,
    /// Samples published.
    pub sent: u64,
    /// Control requests refused (undecodable or unknown scenario).
    pub rejected: u64,
    /// Failed publishes (sent but not stored included) and replies.
    pub errors: u64,
    /// Steps computed and published.
    pub steps: u64,
}

/// Asks the generator for its counters.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "GeneratorCounters")]
pub struct GetCounters;

/// Why the generator could not start.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The settings do not make a fleet.
    #[error("generator settings: {0}")]
    Fleet(#[from] FleetError),
    /// `generator.start` is not RFC 3339.
    #[error("generator.start: `{0}` is not an RFC 3339 time")]
    Start(String),
    /// The NATS micro service or its endpoint could not start.
    #[error("cannot serve {subject}: {reason}")]
    Service {
        /// The control subject.
        subject: String,
        /// What the client said.
        reason: String,
    },
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

/// Builds the fleet from the settings, registers the control endpoint, then starts the
/// generator on the current actix system.
///
/// # Errors
/// [`GeneratorError`] when the settings cannot make a fleet or the endpoint cannot be
/// served; nothing has been published then.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<Generator>, GeneratorError> {
    let generator = &settings.generator;
    let scenario: Scenario = generator.scenario.parse()?;
    let step_seconds = settings.time.step_seconds;
    let step_ms = i64::from(step_seconds) * 1000;
    let full_backfill = u64::from(generator.backfill_hours) * 3600 / u64::from(step_seconds);
    let (start_ms, backfill_steps) = if generator.start.is_empty() {
        let now_ms = wire::now_ms();
        let backfill_start = now_ms - i64::from(generator.backfill_hours) * 3_600_000;
        match last_published_ms(&bus).await {
            // Continue after the previous run's last step, so the window keeper (which
            // rebuilds its windows from the stream) sees time move on, not jump back.
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
    } else {
        let start_ms = chrono::DateTime::parse_from_rfc3339(&generator.start)
            .map_err(|_| GeneratorError::Start(generator.start.clone()))?
            .timestamp_millis();
        (start_ms, full_backfill)
    };
    let config = FleetConfig {
        servers: generator.servers,
        seed: generator.seed,
        step_seconds,
        problem_child_share: generator.problem_child_share,
        start_ms: start_ms - start_ms.rem_euclid(step_ms),
        scenario,
    };
    let fleet = tokio::task::spawn_blocking(move || Fleet::new(&config))
        .await
        .expect("fleet construction does not panic")?;
    let shared = Arc::new(Shared::new(&fleet));
    if !generator.enabled {
        tracing::info!("generator disabled (generator.enabled = false): not publishing");
        return Ok(Generator::create(|_| Generator {
            bus,
            shared,
            _service: None,
            endpoint: None,
            clock: None,
        }));
    }
    let subject = bus.subjects().control_scenario();
    let service_error = |error: async_nats::Error| GeneratorError::Service {
        subject: subject.clone(),
        reason: error.to_string(),
    };
    let service = bus
        .client()
        .service_builder()
        .description("fleetcast synthetic fleet: publishes metrics, serves scenario control")
        .start("fleetcast-generator", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(service_error)?;
    let endpoint = service
        .endpoint_builder()
        .name("scenario")
        .add(subject.clone())
        .await
        .map_err(service_error)?;
    // Make sure the subscription is on the server before anyone is told we are up.
    bus.client()
        .flush()
        .await
        .map_err(|error| GeneratorError::Service {
            subject: subject.clone(),
            reason: error.to_string(),
        })?;
    tracing::info!(
        servers = generator.servers,
        seed = generator.seed,
        scenario = %scenario,
        backfill_steps,
        step_interval_ms = generator.step_interval_ms,
        start = %chrono::DateTime::from_timestamp_millis(fleet.step_start_ms(0)).unwrap_or_default(),
        "generator starting"
    );
    Ok(Generator::create(|_| Generator {
        bus,
        shared,
        _service: Some(service),
        endpoint: Some(endpoint),
        clock: Some(Clock {
            fleet: Box::new(fleet),
            backfill_steps,
            interval: Duration::from_millis(generator.step_interval_ms),
        }),
    }))
}

impl Actor for Generator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(endpoint) = self.endpoint.take() {
            ctx.add_stream(endpoint);
        }
        if let Some(clock) = self.clock.take() {
            ctx.spawn(wrap_future(run_clock(
                clock,
                self.shared.clone(),
                self.bus.clone(),
            )));
        }
    }
}

impl Handler<GetCounters> for Generator {
    type Result = GeneratorCounters;

    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> GeneratorCounters {
        let counters = &self.shared.counters;
        GeneratorCounters {
            received: counters.received.load(Ordering::Relaxed),
            sent: counters.sent.load(Ordering::Relaxed),
            rejected: counters.rejected.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            steps: counters.steps.load(Ordering::Relaxed),
        }
    }
}

impl StreamHandler<service::Request> for Generator {
    fn handle(&mut self, request: service::Request, ctx: &mut Self::Context) {
        let counters = &self.shared.counters;
        counters.received.fetch_add(1, Ordering::Relaxed);
        let subject = request.message.subject.to_string();
        let (reply, rejection) = match wire::decode::<ScenarioRequest>(&request.message.payload) {
            Ok(scenario_request) => {
                let reply = self.shared.answer(&scenario_request.scenario);
                let rejection = (!reply.ok).then(|| {
                    (
                        RejectKind::BadContent,
                        reply.error.clone().unwrap_or_default(),
                    )
                });
                (reply, rejection)
            }
            Err(error) => {
                let mut reply = self.shared.answer("status");
                reply.ok = false;
                reply.error = Some(format!("cannot read the request: {error}"));
                (reply, Some((error.kind(), error.to_string())))
            }
        };
        if let Some((kind, reason)) = &rejection {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%subject, %reason, "scenario request refused");
            let rejection = Rejection {
                v: SCHEMA_VERSION,
                stage: STAGE.to_string(),
                subject: subject.clone(),
                server: None,
                kind: *kind,
                reason: reason.clone(),
                at_ms: wire::now_ms(),
            };
            let bus = self.bus.clone();
            let shared = self.shared.clone();
            ctx.spawn(wrap_future(async move {
                if let Err(error) = bus
                    .publish(bus.subjects().rejected(STAGE), &rejection)
                    .await
                {
                    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "cannot publish a rejection");
                }
            }));
        } else if reply.old_scenario != reply.new_scenario {
            tracing::info!(
                old = %reply.old_scenario,
                new = %reply.new_scenario,
                affected = reply.affected_servers.len(),
                step = reply.step,
                "scenario switched"
            );
        }
        let shared = self.shared.clone();
        let payload = Bytes::from(wire::encode(&reply));
        ctx.spawn(wrap_future(async move {
            if let Err(error) = request
                .respond_with_headers(Ok(payload), bus::headers())
                .await
            {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "cannot answer a scenario request");
            }
        }));
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("scenario endpoint closed: control requests are no longer served");
    }
}

impl Shared {
    fn new(fleet: &Fleet) -> Shared {
        Shared {
            layout: fleet.layout().clone(),
            control: Mutex::new(Control {
                scenario: fleet.scenario(),
                affected: fleet.affected().to_vec(),
                pending: Vec::new(),
                next_step: fleet.next_step(),
            }),
            counters: Counters::default(),
        }
    }

    /// Applies (or, for `status`, only reports) a scenario request.
    fn answer(&self, requested: &str) -> ScenarioReply {
        let mut control = self.control.lock().expect("control lock");
        let old = control.scenario;
        let mut error = None;
        if requested != "status" {
            match requested.parse::<Scenario>() {
                Ok(new) if new == old => {}
                Ok(new) => {
                    control.affected = self.layout.plan(old, new).affected;
                    control.scenario = new;
                    control.pending.push(new);
                }
                Err(_) => {
                    error = Some(format!(
                        "unknown scenario `{requested}`; valid: {} (or `status`)",
                        SCENARIOS.join(", ")
                    ));
                }
            }
        }
        let servers = self.layout.servers();
        ScenarioReply {
            v: SCHEMA_VERSION,
            ok: error.is_none(),
            error,
            old_scenario: old.name().to_string(),
            new_scenario: control.scenario.name().to_string(),
            affected_servers: control
                .affected
                .iter()
                .take(MAX_LISTED_SERVERS)
                .map(|&index| servers[index as usize].name.clone())
                .collect(),
            affected_total: control.affected.len() as u32,
            step: control.next_step,
            fleet_size: servers.len() as u32,
        }
    }
}

/// One step's messages: subject and encoded sample per server.
type Batch = Vec<(String, Bytes)>;

/// Computes the next step and encodes every server's sample (on the blocking pool; big
/// fleets encode on several threads, as they compute).
fn compute_step(fleet: &mut Fleet, subjects: &[String]) -> Batch {
    let layout = fleet.layout().clone();
    let step = fleet.step();
    let ts_ms = step.ts_ms;
    let encode = |(spec, row): (&ServerSpec, &Row)| {
        let sample = MetricSample {
            v: SCHEMA_VERSION,
            server: spec.name.clone(),
            ts_ms,
            profile: Some(spec.profile.name().to_string()),
            metrics: Metric::ALL
                .iter()
                .zip(row.values)
                .map(|(metric, value)| (metric.name().to_string(), value))
                .collect::<BTreeMap<_, _>>(),
        };
        Bytes::from(wire::encode(&sample))
    };
    let specs = layout.servers();
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get().min(16));
    let payloads: Vec<Bytes> = if specs.len() < 4096 || threads == 1 {
        specs.iter().zip(step.rows).map(encode).collect()
    } else {
        let chunk = specs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = specs
                .chunks(chunk)
                .zip(step.rows.chunks(chunk))
                .map(|(specs, rows)| {
                    scope.spawn(move || specs.iter().zip(rows).map(encode).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("encoding does not panic"))
                .collect()
        })
    };
    subjects.iter().cloned().zip(payloads).collect()
}

/// The simulated clock: backfill as fast as the bus takes it, then one step per interval.
async fn run_clock(clock: Clock, shared: Arc<Shared>, bus: Bus) {
    let Clock {
        mut fleet,
        backfill_steps,
        interval,
    } = clock;
    let subjects: Arc<Vec<String>> = Arc::new(
        fleet
            .servers()
            .iter()
            .map(|spec| bus.subjects().metrics(&spec.name))
            .collect(),
    );
    let mut publisher = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    let counters = &shared.counters;
    let started = Instant::now();
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut last_error_log: Option<Instant> = None;
    let mut last_slow_log: Option<Instant> = None;
    loop {
        let backfilling = fleet.next_step() < backfill_steps;
        if !backfilling {
            if backfill_steps > 0 && fleet.next_step() == backfill_steps {
                tracing::info!(
                    steps = backfill_steps,
                    seconds = started.elapsed().as_secs_f64(),
                    "backfill done, going live"
                );
            }
            if interval.is_zero() {
                tokio::task::yield_now().await;
            } else {
                let ticker = ticker.get_or_insert_with(|| {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker
                });
                ticker.tick().await;
            }
        }
        let pending = {
            let mut control = shared.control.lock().expect("control lock");
            // A request arriving while this step is computed takes effect at the next one.
            control.next_step = fleet.next_step() + 1;
            std::mem::take(&mut control.pending)
        };
        for scenario in pending {
            fleet.set_scenario(scenario);
        }
        let step_started = Instant::now();
        let step_subjects = subjects.clone();
        let computed = tokio::task::spawn_blocking(move || {
            let batch = compute_step(&mut fleet, &step_subjects);
            (fleet, batch)
        })
        .await;
        let batch = match computed {
            Ok((returned, batch)) => {
                fleet = returned;
                batch
            }
            Err(error) => {
                tracing::error!(%error, "step computation failed: the clock stops");
                return;
            }
        };
        let computed_in = step_started.elapsed();
        let samples = batch.len();
        for (published, (subject, payload)) in batch.into_iter().enumerate() {
            // Big fleets: let control requests and other actors in between publishes.
            if published % 1024 == 1023 {
                tokio::task::yield_now().await;
            }
            match publisher.publish(subject, payload).await {
                Ok(unstored) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    counters.errors.fetch_add(unstored, Ordering::Relaxed);
                }
                Err(error) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        last_error_log = Some(Instant::now());
                        tracing::warn!(%error, "publish failed (logged at most every 10 s)");
                    }
                }
            }
        }
        // Every sample of the step stored before the next is computed: bounded memory, and a
        // backfill goes at the stream's pace.
        counters
            .errors
            .fetch_add(publisher.flush().await, Ordering::Relaxed);
        if backfilling {
            let done = fleet.next_step();
            let tenth = (backfill_steps / 10).max(1);
            if done % tenth == 0 {
                tracing::info!(
                    step = done,
                    of = backfill_steps,
                    seconds = started.elapsed().as_secs_f64(),
                    "backfill progress"
                );
            }
        }
        let took = step_started.elapsed();
        tracing::debug!(
            step = fleet.next_step() - 1,
            samples,
            compute_ms = computed_in.as_secs_f64() * 1e3,
            total_ms = took.as_secs_f64() * 1e3,
            "step published"
        );
        if !backfilling
            && !interval.is_zero()
            && took > interval
            && last_slow_log.is_none_or(|at| at.elapsed() > Duration::from_secs(60))
        {
            last_slow_log = Some(Instant::now());
            tracing::warn!(
                took_ms = took.as_secs_f64() * 1e3,
                interval_ms = interval.as_secs_f64() * 1e3,
                "a step takes longer than the step interval: the simulated clock runs slow (logged at most every 60 s)"
            );
        }
        counters.steps.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies stay inside NATS's payload limit at 100,000 servers, counting every server.
    #[test]
    fn big_fleet_replies_fit_a_nats_message() {
        let mut config = FleetConfig::new(100_000, 42);
        config.scenario = Scenario::Natural;
        let shared = Shared::new(&Fleet::new(&config).unwrap());
        let reply = shared.answer("healthy");
        assert!(reply.ok);
        assert_eq!(reply.affected_total, 100_000);
        assert_eq!(reply.affected_servers.len(), MAX_LISTED_SERVERS);
        assert!(wire::encode(&reply).len() < 512 * 1024);
        assert_eq!(
            shared.control.lock().unwrap().pending,
            vec![Scenario::Healthy]
        );
    }

    /// `status` and a refused name change nothing and queue nothing.
    #[test]
    fn status_and_unknown_names_change_nothing() {
        let shared = Shared::new(&Fleet::new(&FleetConfig::new(30, 1)).unwrap());
        let status = shared.answer("status");
        assert!(status.ok);
        assert_eq!(status.new_scenario, "natural");
        let refused = shared.answer("Critical");
        assert!(!refused.ok);
        assert!(
            refused
                .error
                .unwrap()
                .contains("healthy, natural, degrading")
        );
        assert!(shared.control.lock().unwrap().pending.is_empty());
        let degrading = shared.answer("degrading");
        assert_eq!(degrading.affected_total, 6);
        let critical = shared.answer("critical");
        assert_eq!(critical.old_scenario, "degrading");
        assert_eq!(critical.affected_servers, degrading.affected_servers);
    }
}
