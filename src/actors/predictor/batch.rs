//! One batch's work off the actor (inference on the blocking pool, publishing, acknowledging),
//! and the intake task that collects jobs into batches.

use super::job::ValidJob;
use super::{Predictor, ProcessBatch, lock};
use crate::actors::stage::{AsyncStage, Envelope, Reject};
use crate::model::{ModelError, OnnxModel, error_chain, forecast_histories};
use crate::subjects::Subjects;
use crate::wire;
use actix::prelude::*;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// What one batch did, for the counters and the logs.
#[derive(Debug, Default)]
pub(super) struct BatchOutcome {
    pub(super) sent: u64,
    pub(super) errors: u64,
    pub(super) ran: bool,
    pub(super) published: Vec<String>,
}

/// One prepared forecast: subject, id and payload.
struct Prepared {
    key: String,
    server: String,
    payload: Vec<u8>,
}

/// What a batch needs off the actor: the stage's outbox and rejection path, the subjects, the
/// connection (to flush acknowledgements) and the model.
pub(super) struct BatchWork {
    pub(super) stage: AsyncStage,
    pub(super) subjects: Subjects,
    pub(super) client: async_nats::Client,
    pub(super) model: Arc<Mutex<OnnxModel>>,
}

impl BatchWork {
    pub(super) async fn run(
        self,
        accepted: Vec<(ValidJob, jetstream::Message)>,
        rejected: Vec<(Reject, jetstream::Message)>,
        duplicates: Vec<jetstream::Message>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        for (rejection, message) in rejected {
            self.reject(&message, rejection).await;
        }
        for message in duplicates {
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "cannot acknowledge a duplicate job");
            }
        }
        if !accepted.is_empty() {
            self.forecast(accepted, &mut outcome).await;
        }
        if let Err(error) = self.client.flush().await {
            tracing::warn!(%error, "cannot flush acknowledgements");
        }
        outcome
    }

    /// Refuses the job (counted, logged, published on `rejected.predictor`) and terminates
    /// it: a bad job never comes back.
    async fn reject(&self, message: &jetstream::Message, rejection: Reject) {
        self.stage.reject(&message.subject, rejection).await;
        if let Err(error) = message.ack_with(AckKind::Term).await {
            tracing::warn!(%error, "cannot terminate a rejected job");
        }
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
        // Through the stage's outbox, in order, each with a receipt: a job is acknowledged
        // only once the FORECASTS stream has stored its forecast.
        let mut pending = Vec::with_capacity(prepared.len());
        for (result, message) in prepared.into_iter().zip(messages) {
            match result {
                Ok(forecast) => {
                    let (envelope, stored) = Envelope::encoded(
                        self.subjects.forecasts(&forecast.server),
                        forecast.payload.into(),
                        true,
                    )
                    .with_msg_id(forecast.key.clone())
                    .with_receipt();
                    self.stage.outbox().send(envelope).await;
                    pending.push((forecast.key, stored, message));
                }
                Err(rejection) => self.reject(&message, rejection).await,
            }
        }
        for (key, stored, message) in pending {
            if stored.await == Ok(true) {
                if let Err(error) = message.ack().await {
                    tracing::warn!(%error, "cannot acknowledge a job");
                }
                outcome.sent += 1;
                outcome.published.push(key);
            } else {
                tracing::warn!(key = %key, "forecast not stored: job handed back");
                self.hand_back(std::slice::from_ref(&message), outcome)
                    .await;
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
) -> Result<Vec<Result<Prepared, Reject>>, ModelError> {
    let forecasts = forecast_histories(&mut lock(model), jobs, wire::now_ms())?;
    Ok(jobs
        .iter()
        .zip(forecasts)
        .map(|(job, forecast)| match forecast {
            Ok(forecast) => Ok(Prepared {
                key: job.key(),
                server: job.history.server.clone(),
                payload: wire::encode(&forecast),
            }),
            Err(problem) => {
                Err(Reject::new(problem.kind, problem.reason).with_server(&job.history.server))
            }
        })
        .collect())
}

/// Collects jobs into batches (`max_batch` jobs, or what arrived within `max_wait` of the
/// first) and hands them to the actor, at most as many at a time as `permits` allows. When
/// `stop` turns true it hands over the batch it was collecting and ends (a drain); what the
/// client had fetched beyond it is redelivered after `ack_wait`.
pub(super) async fn intake(
    mut messages: pull::Stream,
    predictor: Addr<Predictor>,
    limits: (usize, Duration),
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (max_batch, max_wait) = limits;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            next = messages.next() => match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::debug!(%error, "job stream");
                    continue;
                }
                None => break,
            },
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut stopping = false;
        while batch.len() < max_batch {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => {
                    stopping = true;
                    break;
                }
                next = tokio::time::timeout_at(deadline, messages.next()) => match next {
                    Ok(Some(Ok(message))) => batch.push(message),
                    Ok(Some(Err(error))) => tracing::debug!(%error, "job stream"),
                    Ok(None) | Err(_) => break,
                },
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
        if stopping {
            break;
        }
    }
    tracing::info!(stage = super::STAGE, "job intake ended");
}
