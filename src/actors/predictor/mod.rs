//! The predictor: forecasts every full window with the Temporal Fusion Transformer on ONNX
//! Runtime, as one of any number of workers sharing the work.
//!
//! **Consumes** `PredictJob` from `jobs.predict.<server>` through the JetStream stream
//! `<PREFIX>_PREDICT_JOBS` (work-queue retention) and its one durable pull consumer
//! `predictor`, which every worker binds to: each job is handed to one worker at a time. It
//! also listens (a plain subscription, so every worker hears it) on `control.model.load`
//! (`ModelLoadRequest`) and answers each request with its own `ModelLoadReply`.
//!
//! **Publishes** one `Forecast` per job on `forecasts.<server>`, through JetStream (the
//! `<PREFIX>_FORECASTS` stream acknowledges each), with the header
//! `Nats-Msg-Id: <server>-<origin_s>`; bad jobs and unusable model outputs go to
//! `rejected.predictor` as `Rejection`s with their reason.
//!
//! **Batching.** An intake task collects jobs until `predictor.max_batch` are waiting or the
//! first has waited `predictor.max_wait_ms`, then hands the batch to the actor. The actor
//! decodes and checks each job (on its thread: cheap), then runs the whole batch as one ONNX
//! Runtime call on tokio's blocking pool, never on the async runtime's threads. At most two
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

pub mod model;

use crate::bus::{Bus, BusError, headers};
use crate::catalog::{Metric, Profile, is_valid_server_name};
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subjects};
use crate::wire::{
    self, AttentionSummary, Driver, Forecast, ModelLoadReply, ModelLoadRequest, PredictJob,
    QuantileSeries, RejectKind, Rejection, SCHEMA_VERSION,
};
use actix::prelude::*;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use model::{
    ModelBatch, ModelError, ModelMetadata, ModelOptions, ModelOutputs, OnnxModel, error_chain,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Stage name in rejections and logs.
pub const STAGE: &str = "predictor";

/// The durable consumer every worker binds to.
pub const CONSUMER: &str = "predictor";

/// Deliveries of one job before JetStream gives up on it.
const MAX_DELIVER: i64 = 5;

/// Batches handed to the actor and not finished: one running, one ready behind it.
const BATCHES_IN_FLIGHT: usize = 2;

/// Encoder variables named as drivers in a forecast.
const TOP_DRIVERS: usize = 5;

/// Past steps named in the attention summary.
const TOP_ATTENTION_STEPS: usize = 3;

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

/// The lengths a job must have: the model's (equal to the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobShape {
    /// Steps in a window.
    pub context_steps: u32,
    /// Seconds per step.
    pub step_seconds: u32,
}

/// A decoded job that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    /// Server name.
    pub server: String,
    /// Its profile.
    pub profile: Profile,
    /// Start of the last step, unix seconds (the forecast origin).
    pub last_step_s: i64,
    /// `context × 14` values, step-major, oldest first.
    pub values: Vec<f32>,
}

impl ValidJob {
    /// The key of its forecast, also its `Nats-Msg-Id`: `<server>-<origin_s>`.
    pub fn key(&self) -> String {
        forecast_key(&self.server, self.last_step_s)
    }
}

/// The `Nats-Msg-Id` of one server's forecast from one origin.
pub fn forecast_key(server: &str, origin_s: i64) -> String {
    format!("{server}-{origin_s}")
}

/// Why a job (or its forecast) was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRejection {
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// The reason in words.
    pub reason: String,
    /// The server, when known.
    pub server: Option<String>,
}

impl JobRejection {
    fn new(kind: RejectKind, reason: String, server: Option<&str>) -> Self {
        Self {
            kind,
            reason,
            server: server.map(str::to_string),
        }
    }
}

/// Decodes a job and checks it against the subject it came on and the model's shape.
///
/// # Errors
/// A [`JobRejection`] naming the problem: undecodable payload, other schema version, a
/// server name that is invalid or differs from the subject, an unknown profile, another step
/// length or window length than the model's, a values array of the wrong length, or a
/// non-finite value.
pub fn decode_job(
    subject: &str,
    subjects: &Subjects,
    payload: &[u8],
    shape: JobShape,
) -> Result<ValidJob, JobRejection> {
    let job: PredictJob = wire::decode(payload)
        .map_err(|error| JobRejection::new(error.kind(), error.to_string(), None))?;
    let server = Some(job.server.as_str());
    if !is_valid_server_name(&job.server) || subjects.predict_job(&job.server) != subject {
        return Err(JobRejection::new(
            RejectKind::BadServer,
            format!(
                "server `{}` is not a valid name or differs from the subject {subject}",
                job.server
            ),
            server,
        ));
    }
    let profile: Profile = job
        .profile
        .parse()
        .map_err(|reason| JobRejection::new(RejectKind::UnknownProfile, reason, server))?;
    if job.step_seconds != shape.step_seconds {
        return Err(JobRejection::new(
            RejectKind::BadContent,
            format!(
                "step_seconds {} differs from the model's {}",
                job.step_seconds, shape.step_seconds
            ),
            server,
        ));
    }
    if job.steps != shape.context_steps {
        return Err(JobRejection::new(
            RejectKind::BadContent,
            format!(
                "window of {} steps, the model reads {}",
                job.steps, shape.context_steps
            ),
            server,
        ));
    }
    let expected = shape.context_steps as usize * Metric::ALL.len();
    if job.values.len() != expected {
        return Err(JobRejection::new(
            RejectKind::BadContent,
            format!(
                "values has {} entries, expected {} steps x {} metrics = {expected}",
                job.values.len(),
                shape.context_steps,
                Metric::ALL.len()
            ),
            server,
        ));
    }
    if let Some(index) = job.values.iter().position(|value| !value.is_finite()) {
        let metrics = Metric::ALL.len();
        return Err(JobRejection::new(
            RejectKind::NonFinite,
            format!(
                "value {} at step {} of metric {} is not finite",
                job.values[index],
                index / metrics,
                Metric::ALL[index % metrics]
            ),
            server,
        ));
    }
    Ok(ValidJob {
        server: job.server,
        profile,
        last_step_s: job.last_step_s,
        values: job.values,
    })
}

/// The `count` encoder variables with the largest weights, largest first.
pub fn top_drivers(weights: &[f32], names: &[String], count: usize) -> Vec<Driver> {
    let mut order: Vec<usize> = (0..weights.len().min(names.len())).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    order
        .into_iter()
        .take(count)
        .map(|index| Driver {
            variable: names[index].clone(),
            weight: weights[index],
        })
        .collect()
}

/// Where the attention over the past window (oldest step first) went: the share on the most
/// recent and on the oldest quarter, and the most attended steps as hours before the origin
/// (the start of the last step, which is 0 hours ago).
pub fn summarise_attention(attention: &[f32], step_seconds: u32) -> AttentionSummary {
    let steps = attention.len();
    let total: f32 = attention.iter().sum();
    let quarter = steps / 4;
    let share = |values: &[f32]| {
        if total > 0.0 {
            values.iter().sum::<f32>() / total
        } else {
            0.0
        }
    };
    let mut order: Vec<usize> = (0..steps).collect();
    order.sort_by(|&a, &b| attention[b].total_cmp(&attention[a]));
    AttentionSummary {
        recent_share: share(&attention[steps - quarter..]),
        oldest_share: share(&attention[..quarter]),
        top_hours_ago: order
            .into_iter()
            .take(TOP_ATTENTION_STEPS)
            .map(|index| ((steps - 1 - index) as f64 * f64::from(step_seconds) / 3600.0) as f32)
            .collect(),
    }
}

/// Turns row `row` of a run's outputs into the forecast for `job`.
///
/// # Errors
/// A [`JobRejection`] (`non_finite`) when the model produced NaN or infinity for this server.
pub fn build_forecast(
    job: &ValidJob,
    outputs: &ModelOutputs,
    row: usize,
    metadata: &ModelMetadata,
    issued_ms: i64,
) -> Result<Forecast, JobRejection> {
    let quantiles = outputs.quantiles_of(row);
    let weights = outputs.weights_of(row);
    let attention = outputs.attention_of(row);
    for (name, values) in [
        ("quantiles", quantiles),
        ("variable_weights", weights),
        ("attention", attention),
    ] {
        if let Some(index) = values.iter().position(|value| !value.is_finite()) {
            return Err(JobRejection::new(
                RejectKind::NonFinite,
                format!(
                    "model {} output `{name}` is {} at index {index}",
                    metadata.label(),
                    values[index]
                ),
                Some(&job.server),
            ));
        }
    }
    let horizon = outputs.horizon;
    let metric_count = Metric::ALL.len();
    let quantile_count = model::QUANTILES.len();
    let metrics: BTreeMap<String, QuantileSeries> = Metric::ALL
        .iter()
        .enumerate()
        .map(|(metric_index, metric)| {
            let series = |quantile: usize| -> Vec<f32> {
                (0..horizon)
                    .map(|step| {
                        quantiles[(step * metric_count + metric_index) * quantile_count + quantile]
                    })
                    .collect()
            };
            (
                metric.name().to_string(),
                QuantileSeries {
                    p10: series(0),
                    p50: series(1),
                    p90: series(2),
                },
            )
        })
        .collect();
    let step = i64::from(metadata.step_seconds);
    Ok(Forecast {
        v: SCHEMA_VERSION,
        server: job.server.clone(),
        profile: job.profile.name().to_string(),
        model: metadata.name.clone(),
        model_version: metadata.version.clone(),
        issued_ms,
        origin_s: job.last_step_s,
        step_seconds: metadata.step_seconds,
        step_s: (1..=horizon as i64)
            .map(|k| job.last_step_s + k * step)
            .collect(),
        metrics,
        drivers: top_drivers(weights, &metadata.encoder_variables, TOP_DRIVERS),
        attention: summarise_attention(attention, metadata.step_seconds),
    })
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

/// What one batch did, for the counters and the logs.
#[derive(Debug, Default)]
struct BatchOutcome {
    sent: u64,
    errors: u64,
    ran: bool,
    published: Vec<String>,
    rejections: Vec<JobRejection>,
}

/// One prepared forecast: subject, id and payload.
struct Prepared {
    key: String,
    server: String,
    payload: Vec<u8>,
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

/// What a batch needs off the actor: the bus and the model.
struct BatchWork {
    bus: Bus,
    jetstream: jetstream::Context,
    model: Arc<Mutex<OnnxModel>>,
}

impl BatchWork {
    async fn run(
        self,
        accepted: Vec<(ValidJob, jetstream::Message)>,
        rejected: Vec<(JobRejection, jetstream::Message)>,
        duplicates: Vec<jetstream::Message>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        for (rejection, message) in rejected {
            self.reject(&message, rejection, &mut outcome).await;
        }
        for message in duplicates {
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "cannot acknowledge a duplicate job");
            }
        }
        if !accepted.is_empty() {
            self.forecast(accepted, &mut outcome).await;
        }
        if let Err(error) = self.bus.client().flush().await {
            tracing::warn!(%error, "cannot flush acknowledgements");
        }
        outcome
    }

    /// Publishes the rejection and terminates the job (a bad job never comes back).
    async fn reject(
        &self,
        message: &jetstream::Message,
        rejection: JobRejection,
        outcome: &mut BatchOutcome,
    ) {
        let subjects = self.bus.subjects();
        let dead_letter = Rejection {
            v: SCHEMA_VERSION,
            stage: STAGE.into(),
            subject: message.subject.to_string(),
            server: rejection.server.clone(),
            kind: rejection.kind,
            reason: rejection.reason.clone(),
            at_ms: wire::now_ms(),
        };
        if let Err(error) = self
            .bus
            .publish(subjects.rejected(STAGE), &dead_letter)
            .await
        {
            tracing::warn!(%error, "cannot publish a rejection");
        }
        if let Err(error) = message.ack_with(AckKind::Term).await {
            tracing::warn!(%error, "cannot terminate a rejected job");
        }
        outcome.rejections.push(rejection);
    }

    async fn forecast(
        &self,
        accepted: Vec<(ValidJob, jetstream::Message)>,
        outcome: &mut BatchOutcome,
    ) {
        let (jobs, messages): (Vec<ValidJob>, Vec<jetstream::Message>) =
            accepted.into_iter().unzip();
        let model = Arc::clone(&self.model);
        let ran = tokio::task::spawn_blocking(move || run_batch(&model, &jobs)).await;
        let prepared = match ran {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => {
                let error = error_chain(&error);
                tracing::error!(%error, jobs = messages.len(), "inference failed: jobs handed back");
                return self.hand_back(&messages, outcome).await;
            }
            Err(error) => {
                tracing::error!(%error, jobs = messages.len(), "inference task panicked: jobs handed back");
                return self.hand_back(&messages, outcome).await;
            }
        };
        outcome.ran = true;
        let subjects = self.bus.subjects();
        let mut pending = Vec::with_capacity(prepared.len());
        for (result, message) in prepared.into_iter().zip(messages) {
            match result {
                Ok(forecast) => {
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(forecast.payload.into())
                        .headers(headers())
                        .message_id(&forecast.key);
                    match self
                        .jetstream
                        .send_publish(subjects.forecasts(&forecast.server), publish)
                        .await
                    {
                        Ok(ack) => pending.push((forecast.key, ack, message)),
                        Err(error) => {
                            tracing::warn!(%error, server = %forecast.server, "cannot publish a forecast");
                            self.hand_back(std::slice::from_ref(&message), outcome)
                                .await;
                        }
                    }
                }
                Err(rejection) => self.reject(&message, rejection, outcome).await,
            }
        }
        let (keys_and_messages, acks): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .map(|(key, ack, message)| ((key, message), ack))
            .unzip();
        let stored =
            futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future))
                .await;
        for ((key, message), stored) in keys_and_messages.into_iter().zip(stored) {
            match stored {
                Ok(_) => {
                    if let Err(error) = message.ack().await {
                        tracing::warn!(%error, "cannot acknowledge a job");
                    }
                    outcome.sent += 1;
                    outcome.published.push(key);
                }
                Err(error) => {
                    tracing::warn!(%error, key = %key, "forecast not stored: job handed back");
                    self.hand_back(std::slice::from_ref(&message), outcome)
                        .await;
                }
            }
        }
    }

    /// Negatively acknowledges jobs so JetStream redelivers them (to any worker) a second later.
    async fn hand_back(&self, messages: &[jetstream::Message], outcome: &mut BatchOutcome) {
        for message in messages {
            if let Err(error) = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await
            {
                tracing::warn!(%error, "cannot hand a job back");
            }
            outcome.errors += 1;
        }
    }
}

/// Runs one batch on the model and encodes every forecast (blocking: CPU-bound).
fn run_batch(
    model: &Mutex<OnnxModel>,
    jobs: &[ValidJob],
) -> Result<Vec<Result<Prepared, JobRejection>>, ModelError> {
    let mut batch = ModelBatch::default();
    for job in jobs {
        batch.push(&job.values, job.last_step_s, job.profile);
    }
    let mut model = lock(model);
    let outputs = model.run(&batch)?;
    let metadata = model.metadata();
    let issued_ms = wire::now_ms();
    Ok(jobs
        .iter()
        .enumerate()
        .map(|(row, job)| {
            build_forecast(job, &outputs, row, metadata, issued_ms).map(|forecast| Prepared {
                key: job.key(),
                server: job.server.clone(),
                payload: wire::encode(&forecast),
            })
        })
        .collect())
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

/// Collects jobs into batches (`max_batch` jobs, or what arrived within `max_wait` of the
/// first) and hands them to the actor, at most [`BATCHES_IN_FLIGHT`] at a time.
async fn intake(
    mut messages: pull::Stream,
    predictor: Addr<Predictor>,
    max_batch: usize,
    max_wait: Duration,
) {
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let first = match messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                tracing::debug!(%error, "job stream");
                continue;
            }
            None => break,
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + max_wait;
        while batch.len() < max_batch {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(error))) => tracing::debug!(%error, "job stream"),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        if !predictor.connected() {
            break;
        }
        predictor.do_send(ProcessBatch {
            messages: batch,
            _permit: permit,
        });
    }
    tracing::info!("job intake ended");
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

    const SHAPE: JobShape = JobShape {
        context_steps: 288,
        step_seconds: 300,
    };

    fn job(server: &str) -> PredictJob {
        PredictJob {
            v: SCHEMA_VERSION,
            server: server.into(),
            profile: "database".into(),
            last_step_s: 1_767_571_200,
            step_seconds: 300,
            steps: 288,
            values: vec![1.5; 288 * 14],
            gap_steps: 0,
        }
    }

    fn decode(job: &PredictJob) -> Result<ValidJob, JobRejection> {
        let subjects = Subjects::new("fc");
        decode_job(
            &subjects.predict_job(&job.server),
            &subjects,
            &wire::encode(job),
            SHAPE,
        )
    }

    /// A good job decodes with its profile, origin and values.
    #[test]
    fn good_job_decodes() {
        let valid = decode(&job("ppdb001")).unwrap();
        assert_eq!(valid.profile, Profile::Database);
        assert_eq!(valid.values.len(), 288 * 14);
        assert_eq!(valid.key(), "ppdb001-1767571200");
    }

    /// Each kind of bad job is refused with its own kind and a reason naming the problem.
    #[test]
    fn bad_jobs_are_refused_with_reasons() {
        let subjects = Subjects::new("fc");
        let garbage = decode_job("fc.jobs.predict.x", &subjects, b"\xc1nope", SHAPE).unwrap_err();
        assert_eq!(garbage.kind, RejectKind::Undecodable);

        let mut old = job("a");
        old.v = 7;
        let rejection = decode(&old).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::SchemaVersion);
        assert!(rejection.reason.contains('7'), "{}", rejection.reason);

        let mut short = job("a");
        short.values.pop();
        let rejection = decode(&short).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::BadContent);
        assert!(rejection.reason.contains("4031"), "{}", rejection.reason);

        let mut nan = job("a");
        nan.values[14 * 3 + 5] = f32::NAN;
        let rejection = decode(&nan).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::NonFinite);
        assert!(
            rejection.reason.contains("step 3 of metric mem_used_pct"),
            "{}",
            rejection.reason
        );

        let mut profile = job("a");
        profile.profile = "mainframe".into();
        assert_eq!(
            decode(&profile).unwrap_err().kind,
            RejectKind::UnknownProfile
        );

        let mut steps = job("a");
        steps.steps = 144;
        assert!(decode(&steps).unwrap_err().reason.contains("144 steps"));

        let mut step = job("a");
        step.step_seconds = 60;
        assert!(
            decode(&step)
                .unwrap_err()
                .reason
                .contains("step_seconds 60")
        );

        let other_subject = decode_job(
            &subjects.predict_job("b"),
            &subjects,
            &wire::encode(&job("a")),
            SHAPE,
        )
        .unwrap_err();
        assert_eq!(other_subject.kind, RejectKind::BadServer);
        assert_eq!(other_subject.server.as_deref(), Some("a"));
    }

    /// Drivers are the largest weights, largest first.
    #[test]
    fn drivers_are_the_top_weights() {
        let names: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .map(String::from)
            .to_vec();
        let weights = [0.05, 0.3, 0.1, 0.2, 0.15, 0.12, 0.08];
        let drivers = top_drivers(&weights, &names, 5);
        let order: Vec<&str> = drivers.iter().map(|d| d.variable.as_str()).collect();
        assert_eq!(order, ["b", "d", "e", "f", "c"]);
        assert_eq!(drivers[0].weight, 0.3);
    }

    /// Attention shares and hours ago follow the window's layout (oldest first).
    #[test]
    fn attention_summary_reads_the_window() {
        let mut attention = vec![0.0_f32; 288];
        attention[287] = 0.5; // the last step: 0 h ago
        attention[275] = 0.3; // 12 steps earlier: 1 h ago
        attention[0] = 0.2; // the oldest: 287 steps = 23.9 h ago
        let summary = summarise_attention(&attention, 300);
        assert!((summary.recent_share - 0.8).abs() < 1e-6);
        assert!((summary.oldest_share - 0.2).abs() < 1e-6);
        assert_eq!(summary.top_hours_ago[0], 0.0);
        assert_eq!(summary.top_hours_ago[1], 1.0);
        assert!((summary.top_hours_ago[2] - 287.0 * 300.0 / 3600.0).abs() < 1e-4);
    }

    fn metadata() -> ModelMetadata {
        let mut variables: Vec<String> = Metric::ALL.iter().map(|m| m.name().to_string()).collect();
        variables.extend(["hour_sin", "hour_cos", "dow_sin", "dow_cos"].map(String::from));
        ModelMetadata {
            format_version: 1,
            name: "tft-test".into(),
            version: "1".into(),
            created: String::new(),
            onnx_file: "model.onnx".into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            metrics: Vec::new(),
            profiles: Vec::new(),
            step_seconds: 300,
            context_length: 288,
            horizon: 96,
            quantiles: model::QUANTILES.to_vec(),
            normalisation: serde_json::Value::Null,
            calendar_features: serde_json::Value::Null,
            encoder_variables: variables,
            params: 1,
            flops_per_forecast: 1.0,
            training: serde_json::Value::Null,
            evaluation: serde_json::Value::Null,
        }
    }

    /// Two rows of outputs where value = row·1e6 + step·1000 + metric·10 + quantile.
    fn outputs() -> ModelOutputs {
        let (rows, horizon) = (2, 96);
        let mut quantiles = Vec::new();
        for row in 0..rows {
            for step in 0..horizon {
                for metric in 0..14 {
                    for quantile in 0..3 {
                        quantiles
                            .push((row * 1_000_000 + step * 1000 + metric * 10 + quantile) as f32);
                    }
                }
            }
        }
        let mut weights = vec![0.0_f32; rows * 18];
        weights[18 + 5] = 0.9;
        weights[18 + 17] = 0.1;
        let mut attention = vec![0.0_f32; rows * 288];
        attention[288 + 287] = 1.0;
        ModelOutputs {
            rows,
            horizon,
            variables: 18,
            context: 288,
            quantiles,
            variable_weights: weights,
            attention,
        }
    }

    /// A forecast takes its row's quantiles per metric and step, with step times after the
    /// origin, the model's name and the row's drivers and attention.
    #[test]
    fn forecast_is_assembled_from_its_row() {
        let valid = decode(&job("ppdb001")).unwrap();
        let forecast = build_forecast(&valid, &outputs(), 1, &metadata(), 42).unwrap();
        assert_eq!(forecast.model, "tft-test");
        assert_eq!(forecast.origin_s, 1_767_571_200);
        assert_eq!(forecast.step_s.len(), 96);
        assert_eq!(forecast.step_s[0], 1_767_571_200 + 300);
        assert_eq!(forecast.step_s[95], 1_767_571_200 + 96 * 300);
        let memory = &forecast.metrics["mem_used_pct"];
        assert_eq!(memory.p10[0], 1_000_000.0 + 50.0);
        assert_eq!(memory.p50[2], 1_000_000.0 + 2000.0 + 51.0);
        assert_eq!(memory.p90[95], 1_000_000.0 + 95_000.0 + 52.0);
        assert_eq!(forecast.metrics.len(), 14);
        assert_eq!(forecast.drivers[0].variable, "mem_used_pct");
        assert_eq!(forecast.drivers[1].variable, "dow_cos");
        assert_eq!(forecast.attention.top_hours_ago[0], 0.0);
        assert_eq!(forecast.attention.recent_share, 1.0);
    }

    /// NaN in a row's outputs rejects that server's forecast only.
    #[test]
    fn nan_output_is_rejected_per_row() {
        let valid = decode(&job("ppdb001")).unwrap();
        let mut outputs = outputs();
        outputs.quantiles[96 * 14 * 3 + 7] = f32::NAN;
        let rejection = build_forecast(&valid, &outputs, 1, &metadata(), 0).unwrap_err();
        assert_eq!(rejection.kind, RejectKind::NonFinite);
        assert!(
            rejection.reason.contains("quantiles"),
            "{}",
            rejection.reason
        );
        assert!(build_forecast(&valid, &outputs, 0, &metadata(), 0).is_ok());
    }

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
