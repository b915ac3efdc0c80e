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
//! published, counters ([`GetCounters`]).
//!
//! **Failure.** [`spawn`] fails (naming the cause) when ONNX Runtime, the model, the streams or
//! the consumer are unusable. Afterwards nothing stops the actor: bad jobs are rejected, an
//! ONNX Runtime error negatively acknowledges its batch (redelivered later, counted as
//! errors), a refused model keeps the old one.

mod batch;
pub mod job;

use crate::bus::{Bus, BusError, headers};
use crate::model::{ModelError, ModelOptions, OnnxModel, error_chain};
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::wire::{self, ModelLoadReply, ModelLoadRequest, SCHEMA_VERSION};
use actix::prelude::*;
use async_nats::jetstream::{self, consumer::pull};
use batch::{BatchOutcome, BatchWork, intake};
use futures::StreamExt;
use job::{JobShape, decode_job};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

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
}

/// What the predictor has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PredictorCounters {
    /// Jobs received (duplicates and bad ones included).
    pub received: u64,
    /// Forecasts published and stored.
    pub sent: u64,
    /// Jobs rejected (bad input or unusable model output).
    pub rejected: u64,
    /// Jobs that failed for another reason (ONNX Runtime, the bus) and were handed back.
    pub errors: u64,
    /// ONNX Runtime runs.
    pub batches: u64,
    /// Redelivered jobs this worker had already forecast, acknowledged without a run.
    pub duplicates: u64,
    /// Models switched to.
    pub reloads: u64,
    /// Models refused.
    pub reloads_refused: u64,
}

/// Asks the predictor for its counters.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "PredictorCounters")]
pub struct GetCounters;

/// Loads and checks another model directory, and switches to it when it fits.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ModelLoadReply")]
pub struct LoadModel {
    /// The model directory.
    pub path: PathBuf,
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| {
            name.trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

fn lock(model: &Mutex<OnnxModel>) -> MutexGuard<'_, OnnxModel> {
    // A panic inside ONNX Runtime leaves the model as it was; keep serving with it.
    model
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A predictor worker.
pub struct Predictor {
    bus: Bus,
    jetstream: jetstream::Context,
    worker_id: String,
    shape: JobShape,
    options: ModelOptions,
    /// Runs and swaps take turns on it, so a swap lands between two batches.
    model: Arc<Mutex<OnnxModel>>,
    /// Name and version of the model serving, for replies.
    serving: String,
    recent: RecentKeys,
    counters: PredictorCounters,
    /// When a warning about bad jobs was last logged (they are logged at most every 10 s).
    last_warning: Option<Instant>,
}

impl Actor for Predictor {
    type Context = Context<Self>;
}

impl Predictor {
    fn record(&mut self, outcome: BatchOutcome) {
        self.counters.sent += outcome.sent;
        self.counters.errors += outcome.errors;
        self.counters.batches += u64::from(outcome.ran);
        self.counters.rejected += outcome.rejections.len() as u64;
        for key in outcome.published {
            self.recent.insert(key);
        }
        if let Some(first) = outcome.rejections.first() {
            for rejection in &outcome.rejections {
                tracing::debug!(server = ?rejection.server, kind = ?rejection.kind, reason = %rejection.reason, "job rejected");
            }
            let due = self
                .last_warning
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
            if due {
                self.last_warning = Some(Instant::now());
                tracing::warn!(
                    rejected_total = self.counters.rejected,
                    kind = ?first.kind,
                    reason = %first.reason,
                    "jobs rejected (logged at most every 10 s)"
                );
            }
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

impl Handler<GetCounters> for Predictor {
    type Result = MessageResult<GetCounters>;

    fn handle(&mut self, _: GetCounters, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.counters.clone())
    }
}

impl Handler<ProcessBatch> for Predictor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, batch: ProcessBatch, _: &mut Self::Context) -> Self::Result {
        let ProcessBatch { messages, _permit } = batch;
        self.counters.received += messages.len() as u64;
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
        self.counters.duplicates += duplicates.len() as u64;
        let work = BatchWork {
            bus: self.bus.clone(),
            jetstream: self.jetstream.clone(),
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

impl Handler<LoadModel> for Predictor {
    type Result = ResponseActFuture<Self, ModelLoadReply>;

    fn handle(&mut self, request: LoadModel, _: &mut Self::Context) -> Self::Result {
        let options = self.options.clone();
        let model = Arc::clone(&self.model);
        let path = request.path;
        tracing::info!(worker = %self.worker_id, dir = %path.display(), "loading a model");
        let switch = async move {
            let dir = path.clone();
            let loaded = tokio::task::spawn_blocking(move || OnnxModel::load(&dir, &options))
                .await
                .map_err(|error| format!("model loading task failed: {error}"))?
                .map_err(|error| error_chain(&error))?;
            let label = loaded.metadata().label();
            tokio::task::spawn_blocking(move || {
                let old = std::mem::replace(&mut *lock(&model), loaded);
                drop(old);
            })
            .await
            .map_err(|error| format!("model swap task failed: {error}"))?;
            Ok::<_, String>((label, path))
        };
        Box::pin(switch.into_actor(self).map(|result, actor, _| match result {
            Ok((label, path)) => {
                actor.serving = label;
                actor.counters.reloads += 1;
                tracing::info!(worker = %actor.worker_id, model = %actor.serving, dir = %path.display(), "model switched");
                actor.reply(true, None)
            }
            Err(error) => {
                actor.counters.reloads_refused += 1;
                tracing::warn!(worker = %actor.worker_id, model = %actor.serving, %error, "model refused: the old one keeps serving");
                actor.reply(false, Some(error))
            }
        }))
    }
}

/// Requests on `control.model.load`.
impl StreamHandler<async_nats::Message> for Predictor {
    fn handle(&mut self, message: async_nats::Message, ctx: &mut Self::Context) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!("model load request without a reply subject: ignored");
            return;
        };
        let client = self.bus.client().clone();
        match wire::decode::<ModelLoadRequest>(&message.payload) {
            Err(error) => {
                let reply = self.reply(false, Some(format!("bad request: {error}")));
                actix::spawn(send_reply(client, reply_to, reply));
            }
            Ok(request) => {
                let load = LoadModel {
                    path: PathBuf::from(request.path),
                };
                let reply = <Self as Handler<LoadModel>>::handle(self, load, ctx);
                ctx.spawn(reply.map(move |reply, _, _| {
                    actix::spawn(send_reply(client, reply_to, reply));
                }));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The connection closed; jobs stop too. Keep the actor so counters stay readable.
        tracing::warn!(worker = %self.worker_id, "model control subscription ended");
    }
}

async fn send_reply(
    client: async_nats::Client,
    subject: async_nats::Subject,
    reply: ModelLoadReply,
) {
    let payload = wire::encode(&reply);
    if let Err(error) = client
        .publish_with_headers(subject, headers(), payload.into())
        .await
    {
        tracing::warn!(%error, "cannot send a model load reply");
    }
    let _ = client.flush().await;
}

/// Loads the model, binds to the shared work-queue consumer, subscribes to model-load
/// requests, and starts a predictor worker.
///
/// # Errors
/// [`PredictorError::Model`] when ONNX Runtime or the model is unusable (each mismatch
/// named), [`PredictorError::Bus`] / [`PredictorError::Consumer`] /
/// [`PredictorError::Subscribe`] when the bus refuses.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<Predictor>, PredictorError> {
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
    let predictor = Predictor {
        bus,
        jetstream,
        worker_id,
        shape,
        options,
        model: Arc::new(Mutex::new(model)),
        serving,
        recent: RecentKeys::default(),
        counters: PredictorCounters::default(),
        last_warning: None,
    };
    let addr = Predictor::create(|ctx| {
        ctx.add_stream(control);
        predictor
    });
    actix::spawn(intake(
        messages,
        addr.clone(),
        config.max_batch,
        Duration::from_millis(config.max_wait_ms),
    ));
    Ok(addr)
}

/// Starts `predictor.workers` workers in this process (ids `<worker_id>-<n>` when more than
/// one), each with its own session, all sharing the jobs.
///
/// # Errors
/// As [`spawn`], for the first worker that cannot start.
pub async fn spawn_workers(
    settings: &Settings,
    bus: Bus,
) -> Result<Vec<Addr<Predictor>>, PredictorError> {
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

/// Sends a model-load request to every predictor worker and collects their replies: waits up
/// to `first_reply` for the first, then until no other arrives for `quiet`.
///
/// # Errors
/// A reason in words when the request cannot be sent.
pub async fn request_model_load(
    bus: &Bus,
    path: &str,
    first_reply: Duration,
    quiet: Duration,
) -> Result<Vec<ModelLoadReply>, String> {
    let client = bus.client();
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| format!("subscribing to the reply inbox: {error}"))?;
    let request = ModelLoadRequest {
        v: SCHEMA_VERSION,
        path: path.to_string(),
    };
    client
        .publish_with_reply_and_headers(
            bus.subjects().control_model_load(),
            inbox,
            headers(),
            wire::encode(&request).into(),
        )
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    client
        .flush()
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    let mut collected = Vec::new();
    let mut wait = first_reply;
    while let Ok(Some(message)) = tokio::time::timeout(wait, replies.next()).await {
        match wire::decode::<ModelLoadReply>(&message.payload) {
            Ok(reply) => collected.push(reply),
            Err(error) => tracing::warn!(%error, "undecodable model load reply"),
        }
        wait = quiet;
    }
    Ok(collected)
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
