//! The predictor: forecasts every full window with the Temporal Fusion Transformer on ONNX
//! Runtime, as one of any number of workers sharing the work.
//!
//! **Consumes** `PredictJob` from `jobs.predict.<server>` through the JetStream stream
//! `<PREFIX>_PREDICT_JOBS` (work-queue retention) and its one durable pull consumer
//! `predictor`, which every worker binds to: each job is handed to one worker at a time. It
//! also listens (a plain subscription, so every worker hears it) on `control.model.load`
//! (`ModelLoadRequest`) and answers each request with its own `ModelLoadReply`.
//!
//! **Publishes** one `Forecast` per job on `forecasts.<server>` (the metrics the job carried
//! with enough observed steps; see [`crate::model::series`]), through JetStream (the
//! `<PREFIX>_FORECASTS` stream acknowledges each), with the header
//! `Nats-Msg-Id: <server>-<origin_s>`; bad jobs and unusable model outputs go to
//! `rejected.predictor` as `Rejection`s with their reason.
//!
//! **Batching.** An intake task collects jobs until `predictor.max_batch` are waiting or the
//! first has waited `predictor.max_wait_ms`, then hands the batch to the actor. The actor
//! decodes and checks each job ([`job`]; on its thread: cheap), then runs the whole batch (one
//! row per metric of each job) as one ONNX Runtime call on tokio's blocking pool, never on the
//! async runtime's threads. At most two
//! batches are in flight (one running, one ready), so a backlog waits in JetStream, not in
//! memory, and ONNX Runtime's activations stay those of one `max_batch` chunk whatever the
//! fleet size.
//!
//! **Delivery guarantee.** A job is acknowledged only after its forecast is stored in the
//! FORECASTS stream (JetStream's publish acknowledgement), or after its rejection is
//! published (then it is terminated, never redelivered). A worker that dies mid-batch leaves
//! its jobs unacknowledged, and JetStream redelivers them to another worker after
//! `predictor.ack_wait_seconds`. So every job yields a forecast (at least once), unless the
//! same job fails 5 deliveries in a row (5 workers killed holding it, or ONNX Runtime failing on
//! it 5 times): then JetStream stops handing it out and it stays in the stream, visible in the
//! consumer's info. A job can be forecast twice only when its acknowledgement is
//! lost or arrives after `ack_wait` (a worker killed between publishing and acknowledging, or
//! a batch slower than `ack_wait`); then:
//! - the FORECASTS stream stores it once: the duplicate carries the same `Nats-Msg-Id` and the
//!   stream drops it inside its duplicate window (2 minutes, longer than any sane `ack_wait`),
//!   so anything reading forecasts from the stream sees exactly one per job;
//! - a core subscriber to `forecasts.>` may see the duplicate (the same forecast of the same
//!   window), which is harmless to the risk scorer (latest per server wins);
//! - a worker remembers the last 50,000 (server, origin) keys it published and acknowledges a
//!   redelivered job it already forecast without running it again.
//!
//! **Hot reload.** On a `ModelLoadRequest` each worker loads and checks the new directory on
//! the blocking pool while the old model keeps serving; on success it swaps the model between
//! two batches (the batch running finishes on the old one), on failure it keeps the old one;
//! either way it replies with the model now serving.
//!
//! **State:** the model (behind a mutex: runs and swaps take turns), the keys recently
//! published.
//!
//! **Counters and service** ([stage toolkit](crate::actors::stage), one micro service
//! `fleetcast-predictor` per worker, instance = the worker id, metadata and fact `model`):
//! `received` jobs, `accepted` (decoded and checked), rejections by kind, `published`
//! (forecasts stored, rejections), `consumer_lag` (the shared consumer's pending count);
//! extras `batches`, `duplicates`, `errors` (jobs handed back), `reloads`,
//! `reloads_refused`.
//!
//! **Drain** ([`Drain`]): the intake stops pulling (the batch it was collecting is handed
//! over), the batches in flight finish (forecasts stored, jobs acknowledged), the outbox
//! flushes. Jobs the client had fetched beyond are redelivered after `ack_wait`.
//!
//! **Failure.** [`spawn`] fails (naming the cause) when ONNX Runtime, the model, the streams or
//! the consumer are unusable. Afterwards nothing stops the actor: bad jobs are rejected, an
//! ONNX Runtime error negatively acknowledges its batch (redelivered later, counted as
//! errors), a refused model keeps the old one.

mod batch;
mod control;
pub mod job;

pub use control::{LoadModel, request_model_load};

pub use crate::actors::stage::Stop;

use crate::actors::stage::service::FACT_MODEL;
use crate::actors::stage::{
    self, Drain, Extra, ServiceError, Stage, StageHandle, StageSpec, Staged,
};
use crate::bus::{Bus, BusError};
use crate::model::{ModelError, ModelOptions, OnnxModel};
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::wire::{ModelLoadReply, SCHEMA_VERSION};
use actix::prelude::*;
use async_nats::jetstream::{self, consumer::pull};
use batch::{BatchOutcome, BatchWork, intake};
use job::{JobShape, decode_job};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Stage name in rejections and logs.
pub const STAGE: &str = "predictor";

/// The durable consumer every worker binds to.
pub const CONSUMER: &str = "predictor";

/// Deliveries of one job before JetStream gives up on it.
const MAX_DELIVER: i64 = 5;

/// Batches handed to the actor and not finished: one running, one ready behind it.
const BATCHES_IN_FLIGHT: usize = 2;

/// Published (server, origin) keys a worker remembers, to skip redelivered jobs.
const RECENT_KEYS: usize = 50_000;

/// Why the predictor could not start.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    /// ONNX Runtime or the model is unusable.
    #[error("cannot load the model")]
    Model(#[from] ModelError),
    /// The bus refused the streams.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The work-queue consumer could not be created or read.
    #[error("jetstream consumer `{CONSUMER}`: {0}")]
    Consumer(String),
    /// The control subscription failed.
    #[error("subscribing to {subject}: {detail}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        detail: String,
    },
    /// The blocking task that loads the model panicked.
    #[error("model loading task failed: {0}")]
    Task(String),
    /// Its micro service could not start.
    #[error("starting the predictor's micro service")]
    Service(#[from] ServiceError),
}

/// The worker's own counters, as extras of its stage counters.
const EXTRAS: [&str; 5] = [
    "batches",
    "duplicates",
    "errors",
    "reloads",
    "reloads_refused",
];

/// Handles on [`EXTRAS`].
struct Extras {
    batches: Extra,
    duplicates: Extra,
    errors: Extra,
    reloads: Extra,
    reloads_refused: Extra,
}

/// A batch of jobs from the intake task.
#[derive(Message)]
#[rtype(result = "()")]
struct ProcessBatch {
    messages: Vec<jetstream::Message>,
    /// Released when the batch is finished, letting the intake hand over the next one.
    _permit: OwnedSemaphorePermit,
}

/// A bounded memory of published forecast keys (oldest forgotten first).
#[derive(Debug, Default)]
struct RecentKeys {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentKeys {
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: String) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > RECENT_KEYS
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

/// `<hostname>-<pid>`, the default worker id.
pub fn default_worker_id() -> String {
    stage::default_instance()
}

fn lock(model: &Mutex<OnnxModel>) -> MutexGuard<'_, OnnxModel> {
    // A panic inside ONNX Runtime leaves the model as it was; keep serving with it.
    model
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A predictor worker.
pub struct Predictor {
    stage: Stage,
    extras: Extras,
    bus: Bus,
    worker_id: String,
    shape: JobShape,
    options: ModelOptions,
    /// Runs and swaps take turns on it, so a swap lands between two batches.
    model: Arc<Mutex<OnnxModel>>,
    /// Name and version of the model serving, for replies.
    serving: String,
    recent: RecentKeys,
    /// Batches handed to the actor and not finished: one running, one ready behind it.
    permits: Arc<Semaphore>,
    /// Tells the intake to stop (a drain).
    stop_intake: watch::Sender<bool>,
    /// The intake task, until a drain waits for it.
    intake: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for Predictor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        let _ = self.stop_intake.send(true);
    }
}

impl Staged for Predictor {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Handler<Stop> for Predictor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Drain> for Predictor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        let _ = self.stop_intake.send(true);
        let intake = self.intake.take();
        let permits = Arc::clone(&self.permits);
        stage::drain(
            async move {
                if let Some(intake) = intake {
                    let _ = intake.await;
                }
                // Every permit back: no batch in flight.
                let _ = permits.acquire_many(BATCHES_IN_FLIGHT as u32).await;
            },
            |_: &mut Predictor, _| {},
        )
    }
}

impl Predictor {
    fn record(&mut self, outcome: BatchOutcome) {
        self.extras.errors.add(outcome.errors);
        self.extras.batches.add(u64::from(outcome.ran));
        for key in outcome.published {
            self.recent.insert(key);
        }
    }

    fn reply(&self, ok: bool, error: Option<String>) -> ModelLoadReply {
        ModelLoadReply {
            v: SCHEMA_VERSION,
            worker: self.worker_id.clone(),
            ok,
            serving: self.serving.clone(),
            error,
        }
    }
}

impl Handler<ProcessBatch> for Predictor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, batch: ProcessBatch, _: &mut Self::Context) -> Self::Result {
        let ProcessBatch { messages, _permit } = batch;
        let counters = self.stage.counters();
        counters.received_many(messages.len() as u64);
        // What the shared consumer has not handed out yet is the workers' lag.
        if let Some(info) = messages.last().and_then(|last| last.info().ok()) {
            counters.set_lag(info.pending);
        }
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut duplicates = Vec::new();
        for message in messages {
            match decode_job(
                message.subject.as_str(),
                self.bus.subjects(),
                &message.payload,
                self.shape,
            ) {
                Ok(job) if self.recent.contains(&job.key()) => duplicates.push(message),
                Ok(job) => accepted.push((job, message)),
                Err(rejection) => rejected.push((rejection, message)),
            }
        }
        counters.accepted_many(accepted.len() as u64);
        self.extras.duplicates.add(duplicates.len() as u64);
        let work = BatchWork {
            stage: self.stage.async_side(),
            subjects: self.bus.subjects().clone(),
            client: self.bus.client().clone(),
            model: Arc::clone(&self.model),
        };
        Box::pin(
            work.run(accepted, rejected, duplicates)
                .into_actor(self)
                .map(move |outcome, actor, _| {
                    drop(_permit);
                    actor.record(outcome);
                }),
        )
    }
}

/// Loads the model, binds to the shared work-queue consumer, subscribes to model-load
/// requests, and starts a predictor worker.
///
/// # Errors
/// [`PredictorError::Model`] when ONNX Runtime or the model is unusable (each mismatch
/// named), [`PredictorError::Bus`] / [`PredictorError::Consumer`] /
/// [`PredictorError::Subscribe`] when the bus refuses.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<Predictor>, PredictorError> {
    let config = &settings.predictor;
    let options = ModelOptions::from_settings(settings)?;
    let dir = config.model_dir.clone();
    let load_options = options.clone();
    let model = tokio::task::spawn_blocking(move || OnnxModel::load(&dir, &load_options))
        .await
        .map_err(|error| PredictorError::Task(error.to_string()))??;
    let serving = model.metadata().label();
    bus.ensure_streams().await?;
    let jetstream = bus.jetstream();
    let subjects = bus.subjects().clone();
    let stream = jetstream
        .get_stream(subjects.stream_name(StreamKind::PredictJobs))
        .await
        .map_err(|error| PredictorError::Consumer(error.to_string()))?;
    let consumer_config = pull::Config {
        durable_name: Some(CONSUMER.into()),
        description: Some("fleetcast predictor workers (shared work queue)".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(config.ack_wait_seconds),
        max_deliver: MAX_DELIVER,
        max_ack_pending: config.max_ack_pending,
        ..Default::default()
    };
    let consumer: jetstream::consumer::PullConsumer = match stream
        .get_or_create_consumer(CONSUMER, consumer_config)
        .await
    {
        Ok(consumer) => consumer,
        // Another worker created it first with other settings: bind to it as it is.
        Err(create_error) => stream
            .get_consumer(CONSUMER)
            .await
            .map_err(|error| PredictorError::Consumer(format!("{create_error}; then {error}")))?,
    };
    let bound = &consumer.cached_info().config;
    if bound.ack_wait != Duration::from_secs(config.ack_wait_seconds)
        || bound.max_ack_pending != config.max_ack_pending
    {
        // The first worker to create the consumer set these for everyone.
        tracing::warn!(
            ack_wait = ?bound.ack_wait,
            max_ack_pending = bound.max_ack_pending,
            "the shared consumer `{CONSUMER}` keeps the settings it was created with; \
             predictor.ack_wait_seconds / max_ack_pending apply after it is deleted"
        );
    }
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.max_batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|error| PredictorError::Consumer(error.to_string()))?;
    let control_subject = subjects.control_model_load();
    let control = bus
        .client()
        .subscribe(control_subject.clone())
        .await
        .map_err(|error| PredictorError::Subscribe {
            subject: control_subject.clone(),
            detail: error.to_string(),
        })?;
    bus.client()
        .flush()
        .await
        .map_err(|error| PredictorError::Subscribe {
            subject: control_subject,
            detail: error.to_string(),
        })?;
    let worker_id = if config.worker_id.is_empty() {
        default_worker_id()
    } else {
        config.worker_id.clone()
    };
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast predictor worker: forecasts full windows with the TFT on ONNX Runtime",
        )
        .instance(&worker_id)
        .metadata(FACT_MODEL, &serving)
        .extras(&EXTRAS),
    )
    .await?;
    stage.facts().set(FACT_MODEL, &serving);
    let counters = stage.counters();
    let [batches, duplicates, errors, reloads, reloads_refused] =
        EXTRAS.map(|name| counters.extra(name));
    let shape = JobShape {
        context_steps: settings.window_keeper.context_steps,
        step_seconds: settings.time.step_seconds,
    };
    tracing::info!(
        worker = %worker_id,
        model = %serving,
        dir = %config.model_dir.display(),
        max_batch = config.max_batch,
        max_wait_ms = config.max_wait_ms,
        intra_threads = config.intra_threads,
        "predictor ready"
    );
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let (stop_intake, intake_stopped) = watch::channel(false);
    let predictor = Predictor {
        stage,
        extras: Extras {
            batches,
            duplicates,
            errors,
            reloads,
            reloads_refused,
        },
        bus,
        worker_id,
        shape,
        options,
        model: Arc::new(Mutex::new(model)),
        serving,
        recent: RecentKeys::default(),
        permits: Arc::clone(&permits),
        stop_intake,
        intake: None,
    };
    let (identity, counters, facts) = (
        predictor.stage.identity().clone(),
        predictor.stage.counters().clone(),
        predictor.stage.facts().clone(),
    );
    let limits = (config.max_batch, Duration::from_millis(config.max_wait_ms));
    let addr = Predictor::create(move |ctx| {
        ctx.add_stream(control);
        let mut predictor = predictor;
        predictor.intake = Some(actix::spawn(intake(
            messages,
            ctx.address(),
            limits,
            permits,
            intake_stopped,
        )));
        predictor
    });
    Ok(StageHandle {
        addr,
        identity,
        counters,
        facts,
    })
}

/// Starts `predictor.workers` workers in this process (ids `<worker_id>-<n>` when more than
/// one), each with its own session, all sharing the jobs.
///
/// # Errors
/// As [`spawn`], for the first worker that cannot start.
pub async fn spawn_workers(
    settings: &Settings,
    bus: Bus,
) -> Result<Vec<StageHandle<Predictor>>, PredictorError> {
    let count = settings.predictor.workers;
    if count <= 1 {
        return Ok(vec![spawn(settings, bus).await?]);
    }
    let base = if settings.predictor.worker_id.is_empty() {
        default_worker_id()
    } else {
        settings.predictor.worker_id.clone()
    };
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let mut one = settings.clone();
        one.predictor.worker_id = format!("{base}-{index}");
        workers.push(spawn(&one, bus.clone()).await?);
    }
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory of published keys forgets the oldest beyond its bound.
    #[test]
    fn recent_keys_are_bounded() {
        let mut recent = RecentKeys::default();
        for index in 0..RECENT_KEYS + 10 {
            recent.insert(format!("k{index}"));
        }
        assert!(!recent.contains("k0"));
        assert!(recent.contains(&format!("k{}", RECENT_KEYS + 9)));
        assert_eq!(recent.set.len(), RECENT_KEYS);
    }
}
