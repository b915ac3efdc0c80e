//! The window keeper: turns the raw sample stream into per-server windows of step means, refuses
//! bad samples with a reason, and hands full windows to the predictor.
//!
//! **Consumes** `metrics.>` ([`MetricSample`](crate::wire::MetricSample)) from the JetStream
//! `METRICS` stream, through an ordered consumer on a connection of its own. The stream is
//! the one path for samples: nothing published while the keeper is busy, starved of CPU or
//! restarting is lost (a core subscription is at-most-once, and the server drops messages for
//! a subscriber that falls behind a burst), and the start-up rebuild and live ingest are one
//! ordered sequence with neither gap nor overlap. Payloads are decoded without allocation by
//! [`sample::decode`], which refuses exactly what [`wire::decode`] refuses.
//!
//! **Publishes**
//! - `jobs.predict.<server>` ([`PredictJob`]): when a step closes and some metric of the
//!   server has `window_keeper.min_observed_steps` observed steps (default 24: two hours), with
//!   every such metric's full context (NaN where not observed), and
//!   `window_keeper.publish_jobs` is on; the JetStream work queue `PREDICT_JOBS` captures it.
//!   Metrics a server never reports are never in its jobs.
//! - `rejected.window_keeper` ([`Rejection`]): every refused sample with its kind and a reason
//!   naming the field and value (see [`fleet`] for the rules).
//! - `status.window_keeper` ([`StageStatus`]): every `window_keeper.status_interval_seconds`,
//!   with counters and warm-up; the same numbers go to the log as one info line.
//!
//! **State**: per server a [`ServerWindow`] of `context_steps × 14` `f32` step values (NaN
//! where not measured) with per-step measured marks and per-metric observed counts, the open step's sums, and counters ([`Counters`]). Memory is
//! O(servers × context), allocated when a server first appears (about 17 KiB per server at
//! 288 steps).
//!
//! **Start-up** ([`spawn`]): connects its ingest connection, creates the `METRICS` stream when
//! missing, and opens the consumer: from the stream's first message when
//! `window_keeper.rebuild_on_start` is on, else just after its last. Messages up to the last
//! one stored at start are a replay (rejections counted, not republished; no jobs) and are
//! taken before the actor starts; everything after is live.
//!
//! **Failure**: bad input never stops it (refused, counted, published, logged at debug and a
//! rate-limited warn). A failed publish is counted and logged. A keeper that falls behind only
//! falls behind: the consumer pulls at its pace. Consumer errors (the ordered consumer
//! recreates itself after a missed heartbeat or a sequence gap) are counted and logged. The
//! actor stops on [`Stop`], or when its consumer ends (the connection closed for good),
//! logging an error; its windows live in memory only, and the next keeper rebuilds them from
//! the stream.
//!
//! Read access for tests and the predictor: [`GetCounters`], [`GetWindow`], [`GetWarmup`],
//! [`GetMemory`] and [`GetFullWindows`] (full windows as predict jobs, in pages by server name).

pub mod fleet;
pub mod sample;
pub mod window;

pub use crate::actors::stage::Stop;
use crate::actors::stage::next_or_settle;
use crate::bus::{Bus, BusError, STREAM_PUBLISH_WINDOW, StreamPublisher};
use crate::catalog::METRIC_COUNT;
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::wire::{self, PredictJob, RejectKind, Rejection, SCHEMA_VERSION, StageStatus};
use actix::prelude::*;
use async_nats::jetstream::{
    self,
    consumer::{
        DeliverPolicy,
        pull::{Ordered, OrderedConfig, OrderedError},
    },
};
use fleet::{Fleet, IngestRules, Verdict};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use window::{MetricMask, ServerWindow, WindowShape};

/// The stage name on `rejected.<stage>` and `status.<stage>`.
pub const STAGE: &str = "window_keeper";

/// Messages handled per actor turn: large enough to amortise the turn, small enough to keep
/// the actor's mailbox (queries, status timer) responsive.
const BATCH: usize = 64;

/// Longest wait for the next replayed message before the rebuild is given up as failed.
const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// At most one warn line about rejections per this interval (the rest are counted in it).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Why the window keeper could not start.
#[derive(Debug, thiserror::Error)]
pub enum WindowKeeperError {
    /// Its ingest connection could not be opened, or the `METRICS` stream not created.
    #[error("window keeper ingest connection: {0}")]
    Connect(#[source] BusError),
    /// The consumer on the `METRICS` stream could not be opened.
    #[error("cannot consume stream {stream}: {reason}")]
    Consume {
        /// The stream.
        stream: String,
        /// What the server or client said.
        reason: String,
    },
    /// The rebuild from the `METRICS` stream failed part way.
    #[error("rebuilding windows from stream {stream}: {reason}")]
    Rebuild {
        /// The stream.
        stream: String,
        /// What went wrong.
        reason: String,
    },
}

/// The keeper's counters, readable with [`GetCounters`] and published in its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Live messages received from the `METRICS` stream.
    pub received: u64,
    /// Samples added to a window.
    pub accepted: u64,
    /// Samples refused.
    pub rejected: u64,
    /// Refusals per kind (snake_case kind name).
    pub rejected_by_kind: BTreeMap<&'static str, u64>,
    /// Steps closed by a later sample.
    pub steps_closed: u64,
    /// Gap steps (no sample at all), held as not observed.
    pub gap_steps: u64,
    /// Messages replayed from the `METRICS` stream at start.
    pub replayed: u64,
    /// Predict jobs published.
    pub jobs_published: u64,
    /// Messages published (jobs, rejections, status).
    pub sent: u64,
    /// Publishes that failed (jobs the stream did not store included).
    pub errors: u64,
    /// Errors from the stream consumer (it recreates itself and goes on).
    pub consumer_errors: u64,
}

impl Counters {
    /// The counters as the `counters` map of a [`StageStatus`].
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::from([
            ("received".to_string(), self.received),
            ("accepted".to_string(), self.accepted),
            ("rejected".to_string(), self.rejected),
            ("steps_closed".to_string(), self.steps_closed),
            ("gap_steps".to_string(), self.gap_steps),
            ("replayed".to_string(), self.replayed),
            ("jobs_published".to_string(), self.jobs_published),
            ("sent".to_string(), self.sent),
            ("errors".to_string(), self.errors),
            ("consumer_errors".to_string(), self.consumer_errors),
        ]);
        for (kind, count) in &self.rejected_by_kind {
            map.insert(format!("rejected.{kind}"), *count);
        }
        map
    }
}

/// The snake_case name of a rejection kind, as on the wire.
pub fn kind_name(kind: RejectKind) -> &'static str {
    match kind {
        RejectKind::Undecodable => "undecodable",
        RejectKind::SchemaVersion => "schema_version",
        RejectKind::BadServer => "bad_server",
        RejectKind::UnknownMetric => "unknown_metric",
        RejectKind::NonFinite => "non_finite",
        RejectKind::OutOfRange => "out_of_range",
        RejectKind::FutureTimestamp => "future_timestamp",
        RejectKind::OutOfOrder => "out_of_order",
        RejectKind::Empty => "empty",
        RejectKind::UnknownProfile => "unknown_profile",
        RejectKind::BadContent => "bad_content",
    }
}

/// Counters the publisher task updates.
#[derive(Debug, Default)]
struct PublishCounters {
    jobs: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
}

/// Something to publish, in order.
enum Outgoing {
    Job(String, PredictJob),
    Rejection(Rejection),
    Status(StageStatus),
}

/// Whether a message is live or part of the start-up replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Live,
    Replay,
}

/// The fleet plus what ingesting needs around it; shared by the replay and the actor.
struct Ingest {
    fleet: Fleet,
    counters: Counters,
    metrics_prefix: String,
    publish_jobs: bool,
    outbox: mpsc::UnboundedSender<Outgoing>,
    last_warn: Option<Instant>,
    unwarned: u64,
}

impl Ingest {
    fn message(&mut self, subject: &str, payload: &[u8], now_ms: i64, source: Source) {
        match source {
            Source::Live => self.counters.received += 1,
            Source::Replay => self.counters.replayed += 1,
        }
        // The server token is everything after `<prefix>.metrics.`; a deeper subject yields a
        // name with dots, which no valid server name matches.
        let subject_server = subject
            .strip_prefix(&self.metrics_prefix)
            .unwrap_or(subject);
        match self.fleet.ingest(subject_server, payload, now_ms) {
            Verdict::Accepted {
                closed_step,
                gap_steps,
                job_ready,
            } => {
                self.counters.accepted += 1;
                self.counters.steps_closed += u64::from(closed_step);
                self.counters.gap_steps += gap_steps;
                if job_ready
                    && self.publish_jobs
                    && source == Source::Live
                    && let Some(job) = self.fleet.job(subject_server)
                {
                    let _ = self
                        .outbox
                        .send(Outgoing::Job(subject_server.to_string(), job));
                }
            }
            Verdict::Rejected {
                server,
                kind,
                reason,
            } => {
                self.counters.rejected += 1;
                *self
                    .counters
                    .rejected_by_kind
                    .entry(kind_name(kind))
                    .or_default() += 1;
                tracing::debug!(subject, kind = kind_name(kind), %reason, "sample rejected");
                if source == Source::Replay {
                    return;
                }
                self.warn_rate_limited(subject, kind, &reason);
                let rejection = Rejection {
                    v: SCHEMA_VERSION,
                    stage: STAGE.to_string(),
                    subject: subject.to_string(),
                    server,
                    kind,
                    reason,
                    at_ms: now_ms,
                };
                let _ = self.outbox.send(Outgoing::Rejection(rejection));
            }
        }
    }

    fn warn_rate_limited(&mut self, subject: &str, kind: RejectKind, reason: &str) {
        let now = Instant::now();
        match self.last_warn {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => self.unwarned += 1,
            _ => {
                tracing::warn!(
                    subject,
                    kind = kind_name(kind),
                    reason,
                    rejected_since_last_warning = self.unwarned,
                    "sample rejected"
                );
                self.last_warn = Some(now);
                self.unwarned = 0;
            }
        }
    }
}

/// The window keeper actor. See the module documentation.
pub struct WindowKeeper {
    ingest: Ingest,
    bus: Bus,
    publish: Arc<PublishCounters>,
    status_interval: Duration,
    /// Keeps the ingest connection open as long as the actor lives.
    _ingest_client: async_nats::Client,
    consumer: Option<Ordered>,
}

impl WindowKeeper {
    fn counters(&self) -> Counters {
        let mut counters = self.ingest.counters.clone();
        counters.jobs_published = self.publish.jobs.load(Ordering::Relaxed);
        counters.sent = self.publish.sent.load(Ordering::Relaxed);
        counters.errors = self.publish.errors.load(Ordering::Relaxed);
        counters
    }

    fn warmup(&self, per_server: bool) -> Warmup {
        let fleet = &self.ingest.fleet;
        let (ready, warmup_pct) = fleet.warmup();
        let mut servers: Vec<ServerWarmup> = Vec::new();
        if per_server {
            servers = fleet
                .windows()
                .map(|(server, window)| ServerWarmup {
                    server: server.to_string(),
                    filled: window.filled() as u32,
                    observed: window.observed_most() as u32,
                    needed: fleet.rules().min_observed as u32,
                    ready: window.is_ready(fleet.rules().min_observed),
                })
                .collect();
            servers.sort_by(|a, b| a.server.cmp(&b.server));
        }
        Warmup {
            servers_tracked: fleet.len() as u32,
            servers_ready: ready as u32,
            warmup_pct,
            per_server: servers,
        }
    }

    fn publish_status(&mut self) {
        let counters = self.counters();
        let warmup = self.warmup(false);
        tracing::info!(
            servers = warmup.servers_tracked,
            ready = warmup.servers_ready,
            warmup_pct = format_args!("{:.1}", warmup.warmup_pct),
            received = counters.received,
            accepted = counters.accepted,
            rejected = counters.rejected,
            rejected_by_kind = ?counters.rejected_by_kind,
            jobs = counters.jobs_published,
            gap_steps = counters.gap_steps,
            consumer_errors = counters.consumer_errors,
            "window keeper status"
        );
        let status = StageStatus {
            v: SCHEMA_VERSION,
            stage: STAGE.to_string(),
            at_ms: wire::now_ms(),
            counters: counters.to_map(),
            servers: warmup.servers_tracked,
            servers_ready: warmup.servers_ready,
            warmup_pct: warmup.warmup_pct,
        };
        let _ = self.ingest.outbox.send(Outgoing::Status(status));
    }
}

impl Actor for WindowKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(consumer) = self.consumer.take() {
            ctx.add_stream(consumer.ready_chunks(BATCH));
        }
        ctx.run_interval(self.status_interval, |keeper, _| keeper.publish_status());
        tracing::info!(
            servers = self.ingest.fleet.len(),
            context_steps = self.ingest.fleet.rules().shape.context_steps,
            step_seconds = self.ingest.fleet.rules().shape.step_seconds,
            subject = %self.bus.subjects().metrics_all(),
            "window keeper live"
        );
    }
}

impl StreamHandler<Vec<Result<jetstream::Message, OrderedError>>> for WindowKeeper {
    fn handle(
        &mut self,
        messages: Vec<Result<jetstream::Message, OrderedError>>,
        _: &mut Self::Context,
    ) {
        let now_ms = wire::now_ms();
        for message in &messages {
            match message {
                Ok(message) => {
                    self.ingest
                        .message(&message.subject, &message.payload, now_ms, Source::Live);
                }
                Err(error) => {
                    self.ingest.counters.consumer_errors += 1;
                    tracing::warn!(%error, "metrics consumer error: it recreates itself and goes on");
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::error!("metrics consumer ended (connection closed): window keeper stops");
        ctx.stop();
    }
}

/// Reads the counters.
#[derive(Debug, Message)]
#[rtype(result = "Counters")]
pub struct GetCounters;

impl Handler<GetCounters> for WindowKeeper {
    type Result = MessageResult<GetCounters>;

    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.counters())
    }
}

impl Handler<Stop> for WindowKeeper {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        tracing::info!("window keeper stopping");
        ctx.stop();
    }
}

/// One server's window as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// Server name.
    pub server: String,
    /// Profile in use (wire name).
    pub profile: String,
    /// Closed steps held.
    pub filled: u32,
    /// Closed steps a full window holds.
    pub capacity: u32,
    /// Some metric has enough observed steps: jobs are published for it.
    pub ready: bool,
    /// Closed steps' values, step-major (`[step * 14 + metric]`), oldest first, NaN where
    /// not measured.
    pub values: Vec<f32>,
    /// Per closed step, oldest first: bit `m` set when metric `m` was measured.
    pub measured: Vec<MetricMask>,
    /// Closed steps held that were gaps (no sample at all).
    pub gap_steps: u32,
    /// Start of the newest closed step, unix seconds.
    pub last_step_s: Option<i64>,
    /// Start of the open step, unix seconds.
    pub open_step_s: Option<i64>,
}

impl WindowSnapshot {
    fn of(server: &str, window: &ServerWindow, shape: WindowShape, min_observed: usize) -> Self {
        let mut values = Vec::with_capacity(window.filled() * METRIC_COUNT);
        window.values_into(&mut values);
        Self {
            server: server.to_string(),
            profile: window.profile.name().to_string(),
            filled: window.filled() as u32,
            capacity: window.capacity() as u32,
            ready: window.is_ready(min_observed),
            values,
            measured: window.measured_marks(),
            gap_steps: window.gap_steps() as u32,
            last_step_s: window
                .newest_closed_step()
                .map(|step| shape.step_start_s(step)),
            open_step_s: window.open_step().map(|step| shape.step_start_s(step)),
        }
    }
}

/// Reads one server's window; `None` for a server never seen.
#[derive(Debug, Message)]
#[rtype(result = "Option<WindowSnapshot>")]
pub struct GetWindow {
    /// Server name.
    pub server: String,
}

impl Handler<GetWindow> for WindowKeeper {
    type Result = MessageResult<GetWindow>;

    fn handle(&mut self, request: GetWindow, _: &mut Self::Context) -> Self::Result {
        let fleet = &self.ingest.fleet;
        MessageResult(fleet.window(&request.server).map(|window| {
            let rules = fleet.rules();
            WindowSnapshot::of(&request.server, window, rules.shape, rules.min_observed)
        }))
    }
}

/// One server's warm-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerWarmup {
    /// Server name.
    pub server: String,
    /// Closed steps held.
    pub filled: u32,
    /// Observed steps of its best-observed metric.
    pub observed: u32,
    /// Observed steps a metric needs to be forecast.
    pub needed: u32,
    /// Some metric has enough observed steps.
    pub ready: bool,
}

/// Fleet warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Warmup {
    /// Servers with a window.
    pub servers_tracked: u32,
    /// Servers whose window is ready.
    pub servers_ready: u32,
    /// Mean over servers of filled/needed, 0–100.
    pub warmup_pct: f64,
    /// Per server, sorted by name (empty unless asked for).
    pub per_server: Vec<ServerWarmup>,
}

/// Reads the fleet's warm-up, per server when `per_server` is set.
#[derive(Debug, Message)]
#[rtype(result = "Warmup")]
pub struct GetWarmup {
    /// Include every server's warm-up.
    pub per_server: bool,
}

impl Handler<GetWarmup> for WindowKeeper {
    type Result = MessageResult<GetWarmup>;

    fn handle(&mut self, request: GetWarmup, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.warmup(request.per_server))
    }
}

/// Memory held by the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReport {
    /// Servers tracked.
    pub servers: usize,
    /// Bytes held by windows and the server map (from the data structures' sizes).
    pub bytes: usize,
}

/// Reads the memory the windows hold.
#[derive(Debug, Message)]
#[rtype(result = "MemoryReport")]
pub struct GetMemory;

impl Handler<GetMemory> for WindowKeeper {
    type Result = MessageResult<GetMemory>;

    fn handle(&mut self, _: GetMemory, _: &mut Self::Context) -> Self::Result {
        MessageResult(MemoryReport {
            servers: self.ingest.fleet.len(),
            bytes: self.ingest.fleet.memory_bytes(),
        })
    }
}

/// Takes a batch of the ready windows as predict jobs, in server-name order: up to `limit`
/// servers whose name sorts after `after` (page through the fleet by passing the last
/// server of the previous page). For in-process batch prediction; the bus path is the
/// `jobs.predict.<server>` stream.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PredictJob>")]
pub struct GetFullWindows {
    /// Start after this server name (`None`: from the first).
    pub after: Option<String>,
    /// Most jobs returned.
    pub limit: usize,
}

impl Handler<GetFullWindows> for WindowKeeper {
    type Result = MessageResult<GetFullWindows>;

    fn handle(&mut self, request: GetFullWindows, _: &mut Self::Context) -> Self::Result {
        let fleet = &self.ingest.fleet;
        let mut ready: Vec<&str> = fleet
            .windows()
            .filter(|(server, window)| {
                window.is_ready(fleet.rules().min_observed)
                    && request.after.as_deref().is_none_or(|after| *server > after)
            })
            .map(|(server, _)| server)
            .collect();
        ready.sort_unstable();
        ready.truncate(request.limit);
        MessageResult(
            ready
                .into_iter()
                .filter_map(|server| fleet.job(server))
                .collect(),
        )
    }
}

/// Opens the keeper's own connection, so its ingest never waits behind the bus's traffic.
async fn connect_ingest(settings: &Settings) -> Result<async_nats::Client, BusError> {
    let nats = &settings.nats;
    async_nats::ConnectOptions::new()
        .name("fleetcast-window-keeper")
        .connection_timeout(Duration::from_secs(3))
        .event_callback(|event| async move {
            tracing::debug!(event = %event, "window keeper nats event");
        })
        .connect(nats.url.as_str())
        .await
        .map_err(|source| BusError::Connect {
            url: nats.url.clone(),
            source,
        })
}

/// Publishes the outbox in order until every sender is gone: jobs into the `PREDICT_JOBS`
/// stream with acknowledgements (a step of a large fleet is a burst), the rest as core
/// messages.
async fn run_publisher(
    bus: Bus,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    counters: Arc<PublishCounters>,
) {
    let subjects = bus.subjects().clone();
    let rejected = subjects.rejected(STAGE);
    let status = subjects.status(STAGE);
    let mut jobs = StreamPublisher::new(bus.client().clone(), STREAM_PUBLISH_WINDOW);
    loop {
        let (next, unstored) = next_or_settle(&mut outbox, &mut jobs).await;
        counters.errors.fetch_add(unstored, Ordering::Relaxed);
        let Some(outgoing) = next else {
            break;
        };
        let result = match outgoing {
            Outgoing::Job(server, job) => {
                let result = jobs
                    .publish_message(subjects.predict_job(&server), &job)
                    .await;
                if let Ok(unstored) = result {
                    counters.jobs.fetch_add(1, Ordering::Relaxed);
                    counters.errors.fetch_add(unstored, Ordering::Relaxed);
                }
                result.map(drop)
            }
            Outgoing::Rejection(rejection) => bus.publish(rejected.clone(), &rejection).await,
            Outgoing::Status(stage_status) => bus.publish(status.clone(), &stage_status).await,
        };
        match result {
            Ok(()) => counters.sent.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(%error, "window keeper publish failed");
                counters.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Opens the ordered consumer on the `METRICS` stream (creating the streams when missing) and,
/// when `rebuild` is on, feeds every message stored before it opened into the windows as a
/// replay. Returns the consumer positioned at the first live message.
async fn open_ingest(
    bus: &Bus,
    client: &async_nats::Client,
    rebuild: bool,
    ingest: &mut Ingest,
) -> Result<Ordered, WindowKeeperError> {
    bus.ensure_streams()
        .await
        .map_err(WindowKeeperError::Connect)?;
    let name = bus.subjects().stream_name(StreamKind::Metrics);
    let consume_failed = |reason: String| WindowKeeperError::Consume {
        stream: name.clone(),
        reason,
    };
    let mut stream = jetstream::new(client.clone())
        .get_stream(&name)
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    let last_sequence = stream
        .info()
        .await
        .map_err(|error| consume_failed(error.to_string()))?
        .state
        .last_sequence;
    let replay = rebuild && last_sequence > 0;
    let deliver_policy = if replay {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: last_sequence + 1,
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: bus.subjects().metrics_all(),
            ..Default::default()
        })
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    let replay = replay && consumer.cached_info().num_pending > 0;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| consume_failed(error.to_string()))?;
    if !replay {
        return Ok(messages);
    }
    let started = Instant::now();
    let rebuild_failed = |reason: String| WindowKeeperError::Rebuild {
        stream: name.clone(),
        reason,
    };
    loop {
        let message = tokio::time::timeout(REPLAY_WAIT, messages.next())
            .await
            .map_err(|_| rebuild_failed(format!("no message within {} s", REPLAY_WAIT.as_secs())))?
            .ok_or_else(|| rebuild_failed("the consumer ended early".into()))?
            .map_err(|error| rebuild_failed(error.to_string()))?;
        let info = message
            .info()
            .map_err(|error| rebuild_failed(error.to_string()))?;
        // The replay ends with the last message stored when the consumer opened (or earlier,
        // when nothing is pending because the last ones aged out meanwhile).
        let done = info.stream_sequence >= last_sequence || info.pending == 0;
        ingest.message(
            &message.subject,
            &message.payload,
            wire::now_ms(),
            Source::Replay,
        );
        if done {
            break;
        }
    }
    tracing::info!(
        stream = %name,
        replayed = ingest.counters.replayed,
        servers = ingest.fleet.len(),
        seconds = started.elapsed().as_secs_f64(),
        "windows rebuilt from the stream"
    );
    Ok(messages)
}

/// Builds and starts the window keeper: opens its ingest connection and its consumer on the
/// `METRICS` stream, rebuilds the windows from the stream when enabled, then starts the actor.
/// Must run inside an actix system.
///
/// # Errors
/// [`WindowKeeperError::Connect`] when its connection cannot be opened or the streams not
/// created, [`WindowKeeperError::Consume`] when the consumer is refused,
/// [`WindowKeeperError::Rebuild`] when a replay fails part way.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<WindowKeeper>, WindowKeeperError> {
    let keeper = &settings.window_keeper;
    let rules = IngestRules {
        shape: WindowShape {
            context_steps: keeper.context_steps as usize,
            step_seconds: i64::from(settings.time.step_seconds),
        },
        max_future_ms: i64::try_from(keeper.max_future_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        min_observed: keeper.min_observed_steps as usize,
    };
    let client = connect_ingest(settings)
        .await
        .map_err(WindowKeeperError::Connect)?;
    let (outbox, outbox_receiver) = mpsc::unbounded_channel();
    let publish = Arc::new(PublishCounters::default());
    actix::spawn(run_publisher(bus.clone(), outbox_receiver, publish.clone()));
    let mut ingest = Ingest {
        fleet: Fleet::new(rules),
        counters: Counters::default(),
        metrics_prefix: bus.subjects().metrics(""),
        publish_jobs: keeper.publish_jobs,
        outbox,
        last_warn: None,
        unwarned: 0,
    };
    let consumer = open_ingest(&bus, &client, keeper.rebuild_on_start, &mut ingest).await?;
    Ok(WindowKeeper {
        ingest,
        bus,
        publish,
        status_interval: Duration::from_secs(keeper.status_interval_seconds),
        _ingest_client: client,
        consumer: Some(consumer),
    }
    .start())
}
