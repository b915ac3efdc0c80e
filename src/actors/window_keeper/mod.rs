//! The window keeper: turns the raw sample stream into per-server windows of step means, refuses
//! bad samples with a reason, and hands full windows to the predictor.
//!
//! **Consumes** `metrics.>` ([`MetricSample`](crate::wire::MetricSample)) from the JetStream
//! `METRICS` stream, through an ordered consumer on a connection of its own. The stream is
//! the one path for samples: nothing published while the keeper is busy, starved of CPU or
//! restarting is lost (a core subscription is at-most-once, and the server drops messages for
//! a subscriber that falls behind a burst), and the start-up rebuild and live ingest are one
//! ordered sequence with neither gap nor overlap. Payloads are decoded without allocation by
//! [`samples::decode`](crate::samples::decode), which refuses exactly what [`wire::decode`] refuses.
//!
//! **Publishes**
//! - `jobs.predict.<server>` ([`PredictJob`]): when a step closes and some metric of the
//!   server has `window_keeper.min_observed_steps` observed steps (default 24: two hours), with
//!   every such metric's full context (NaN where not observed), and
//!   `window_keeper.publish_jobs` is on; the JetStream work queue `PREDICT_JOBS` captures it.
//!   With `window_keeper.forecast_every_steps` N above 1, only every N-th closed step of a
//!   server makes a job (steps offset per server by a hash of its name).
//!   Metrics a server never reports are never in its jobs. Header `Nats-Msg-Id:
//!   <server>-<last_step_s>`: a job sent again after a lost acknowledgement is stored once
//!   (the queue keeps two jobs per server, so stored copies would push the newest out).
//! - `rejected.window_keeper` ([`Rejection`]): every refused sample with its kind and a reason
//!   naming the field and value (see [`fleet`] and [`crate::samples`] for the rules).
//! - `status.window_keeper` ([`StageStatus`]): every `window_keeper.status_interval_seconds`,
//!   with counters and warm-up; the same numbers go to the log as one info line.
//!
//! **State**: per server a [`ServerWindow`](window::ServerWindow) of `context_steps × 14`
//! `f32` step values (NaN where not measured) with per-step measured marks and per-metric
//! observed counts, and the open step's sums. Memory is
//! O(servers × context), allocated when a server first appears (about 17 KiB per server at
//! 288 steps).
//!
//! **Start-up** ([`spawn`]): connects its ingest connection, creates the `METRICS` stream when
//! missing, and opens the consumer: from the stream's first message when
//! `window_keeper.rebuild_on_start` is on, else just after its last. Messages up to the last
//! one stored at start (the stream leader's last sequence: the consumer may sit on a replica
//! still catching up, whose "nothing pending" comes early) are a replay (rejections
//! counted, not republished; no jobs) and are taken before the actor starts; everything
//! after is live. When the last stored messages are gone (deleted meanwhile), the replay
//! ends after 5 s without a message.
//!
//! **Counters and service** ([stage toolkit](crate::actors::stage), micro service
//! `fleetcast-window-keeper`): `received` live samples, `accepted`, rejections by kind,
//! `published` (jobs once the stream stored them, rejections, status), `consumer_lag` (the
//! ordered consumer's pending count); extras `steps_closed`, `gap_steps`, `replayed`,
//! `jobs_published` (jobs queued), `jobs_between` (steps closed between a server's forecast
//! steps), `consumer_errors`; facts `warmup_pct` and
//! `servers_ready` (`ready/tracked`), refreshed every second.
//!
//! **Failure**: bad input never stops it (refused, counted, published, logged at debug and a
//! rate-limited warn). A failed publish is counted and logged. A keeper that falls behind only
//! falls behind: the consumer pulls at its pace. Consumer errors (the ordered consumer
//! recreates itself after two missed idle heartbeats, 8 s: its node died, or a sequence
//! gap) are counted and logged. The
//! actor stops on [`Drain`] (it stops taking samples, publishes a last status, flushes its
//! outbox: what it did not take stays in the stream), on [`Stop`], or when its consumer ends
//! (the connection closed for good), logging an error; its windows live in memory only, and
//! the next keeper rebuilds them from the stream.
//!
//! Read access for tests, the gateway and the predictor ([`queries`]): [`GetWindow`],
//! [`GetWarmup`], [`GetMemory`] and [`GetFullWindows`] (full windows as predict jobs, in
//! pages by server name).

pub mod fleet;
mod ingest;
pub mod queries;
pub mod window;

pub use crate::actors::stage::Stop;
pub use queries::{
    GetFullWindows, GetMemory, GetWarmup, GetWindow, MemoryReport, ServerWarmup, Warmup,
    WindowSnapshot,
};

use crate::actors::stage::service::{FACT_SERVERS_READY, FACT_WARMUP_PCT};
use crate::actors::stage::{self, Drain, ServiceError, Stage, StageHandle, StageSpec, Staged};
use crate::bus::{Bus, BusError};
use crate::samples::IngestRules;
use crate::settings::Settings;
use crate::wire::{self, SCHEMA_VERSION, StageStatus};
use actix::prelude::*;
use async_nats::jetstream::{self, consumer::pull::OrderedError};
use fleet::Fleet;
use futures::StreamExt;
use ingest::{Extras, Ingest, Outgoing, Source};
use std::time::Duration;
use tokio::sync::oneshot;

/// The stage name on `rejected.<stage>` and `status.<stage>`.
pub const STAGE: &str = "window_keeper";

/// Messages handled per actor turn: large enough to amortise the turn, small enough to keep
/// the actor's mailbox (queries, status timer) responsive.
const BATCH: usize = 64;

/// How often the warm-up facts are refreshed.
const FACTS_INTERVAL: Duration = Duration::from_secs(1);

/// Why the window keeper could not start.
#[derive(Debug, thiserror::Error)]
pub enum WindowKeeperError {
    /// Its ingest connection could not be opened, or the `METRICS` stream not created.
    #[error("window keeper ingest connection")]
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
    /// Its micro service could not start.
    #[error("starting the window keeper's micro service")]
    Service(#[from] ServiceError),
}

/// The consumer's messages as the actor takes them: in chunks, until a drain cuts them off.
type Chunks = futures::stream::TakeUntil<
    futures::stream::ReadyChunks<jetstream::consumer::pull::Ordered>,
    oneshot::Receiver<()>,
>;

/// The window keeper actor. See the module documentation.
pub struct WindowKeeper {
    ingest: Ingest,
    stage: Stage,
    status_interval: Duration,
    /// Keeps the ingest connection open as long as the actor lives.
    _ingest_client: async_nats::Client,
    consumer: Option<Chunks>,
    /// Ends the consumer's stream (a drain).
    stop_input: Option<oneshot::Sender<()>>,
    /// Told when the stream has ended during a drain.
    input_ended: Option<oneshot::Sender<()>>,
}

impl WindowKeeper {
    fn publish_status(&mut self, ctx: &mut Context<Self>) {
        let counters = self.stage.counters().snapshot();
        let warmup = queries::warmup(&self.ingest.fleet, false);
        tracing::info!(
            stage = STAGE,
            servers = warmup.servers_tracked,
            ready = warmup.servers_ready,
            warmup_pct = format_args!("{:.1}", warmup.warmup_pct),
            received = counters.received,
            accepted = counters.accepted,
            rejected = counters.rejected,
            rejected_by_kind = ?counters.rejected_by_kind,
            jobs = counters.extra("jobs_published"),
            gap_steps = counters.extra("gap_steps"),
            consumer_errors = counters.extra("consumer_errors"),
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
        let subject = self.ingest.subjects.status(STAGE);
        self.stage.publish(ctx, subject, &status);
    }

    fn refresh_facts(&self) {
        let (ready, warmup_pct) = self.ingest.fleet.warmup();
        let facts = self.stage.facts();
        facts.set(FACT_WARMUP_PCT, format!("{warmup_pct:.1}"));
        facts.set(
            FACT_SERVERS_READY,
            format!("{ready}/{}", self.ingest.fleet.len()),
        );
    }
}

impl Actor for WindowKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(consumer) = self.consumer.take() {
            ctx.add_stream(consumer);
        }
        self.refresh_facts();
        ctx.run_interval(self.status_interval, |keeper, ctx| {
            keeper.publish_status(ctx)
        });
        ctx.run_interval(FACTS_INTERVAL, |keeper, _| keeper.refresh_facts());
        let shape = self.ingest.fleet.rules().shape;
        tracing::info!(
            stage = STAGE,
            servers = self.ingest.fleet.len(),
            context_steps = shape.context_steps,
            step_seconds = shape.step_seconds,
            subject = %self.ingest.subjects.metrics_all(),
            "window keeper live"
        );
    }
}

impl Staged for WindowKeeper {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl StreamHandler<Vec<Result<jetstream::Message, OrderedError>>> for WindowKeeper {
    fn handle(
        &mut self,
        messages: Vec<Result<jetstream::Message, OrderedError>>,
        ctx: &mut Self::Context,
    ) {
        let now_ms = wire::now_ms();
        for message in &messages {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    self.ingest.extras.consumer_errors.incr();
                    tracing::warn!(stage = STAGE, %error, "metrics consumer error: it recreates itself and goes on");
                    continue;
                }
            };
            let outgoing =
                self.ingest
                    .message(&message.subject, &message.payload, now_ms, Source::Live);
            match outgoing {
                None => {}
                Some(Outgoing::Job(server, job)) => {
                    self.ingest.extras.jobs_published.incr();
                    let subject = self.ingest.subjects.predict_job(&server);
                    // With an id, a job sent again after a lost acknowledgement (a failover)
                    // is not stored twice.
                    let id = format!("{server}-{}", job.last_step_s);
                    self.stage.publish_to_stream_with_id(ctx, subject, &job, id);
                }
                Some(Outgoing::Reject(reject)) => {
                    self.stage.reject(ctx, &message.subject, reject);
                }
            }
        }
        // What the consumer has not delivered yet is the keeper's lag.
        if let Some(Ok(last)) = messages.last()
            && let Ok(info) = last.info()
        {
            self.stage.counters().set_lag(info.pending);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Some(ended) = self.input_ended.take() {
            let _ = ended.send(());
            return;
        }
        tracing::error!(
            stage = STAGE,
            "metrics consumer ended (connection closed): window keeper stops"
        );
        ctx.stop();
    }
}

impl Handler<Stop> for WindowKeeper {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        tracing::info!(stage = STAGE, "window keeper stopping");
        ctx.stop();
    }
}

impl Handler<Drain> for WindowKeeper {
    type Result = ResponseActFuture<Self, ()>;

    /// Stops taking samples (what it did not take stays in the stream), publishes a last
    /// status, flushes, stops.
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        let (ended, input_ended) = oneshot::channel();
        let stopping = self.stop_input.take().map(|stop| {
            self.input_ended = Some(ended);
            let _ = stop.send(());
        });
        stage::drain(
            async move {
                if stopping.is_some() {
                    let _ = input_ended.await;
                }
            },
            |keeper: &mut WindowKeeper, ctx| keeper.publish_status(ctx),
        )
    }
}

/// Builds and starts the window keeper: its stage (micro service, outbox), its ingest
/// connection and its consumer on the `METRICS` stream, rebuilds the windows from the stream
/// when enabled, then starts the actor. Must run inside an actix system.
///
/// # Errors
/// [`WindowKeeperError::Service`] when the micro service cannot start,
/// [`WindowKeeperError::Connect`] when its connection cannot be opened or the streams not
/// created, [`WindowKeeperError::Consume`] when the consumer is refused,
/// [`WindowKeeperError::Rebuild`] when a replay fails part way.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<WindowKeeper>, WindowKeeperError> {
    let keeper = &settings.window_keeper;
    let rules = IngestRules::from_settings(settings);
    let mut stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast window keeper: per-server windows of step means, predict jobs",
        )
        .extras(&ingest::EXTRAS),
    )
    .await?;
    let client = ingest::connect_ingest(settings)
        .await
        .map_err(WindowKeeperError::Connect)?;
    let counters = stage.counters().clone();
    let mut ingest = Ingest {
        fleet: Fleet::new(rules),
        extras: Extras::of(&counters),
        counters,
        subjects: bus.subjects().clone(),
        publish_jobs: keeper.publish_jobs,
        forecast_every: u64::from(keeper.forecast_every_steps),
    };
    let consumer = ingest::open_ingest(
        &bus,
        &client,
        keeper.rebuild_on_start,
        &mut ingest,
        &mut stage,
    )
    .await?;
    let (stop_input, input_stopped) = oneshot::channel();
    Ok(stage::start(WindowKeeper {
        ingest,
        stage,
        status_interval: Duration::from_secs(keeper.status_interval_seconds),
        _ingest_client: client,
        consumer: Some(consumer.ready_chunks(BATCH).take_until(input_stopped)),
        stop_input: Some(stop_input),
        input_ended: None,
    }))
}
