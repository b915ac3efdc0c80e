//! One batch's work off the actor (inference on the blocking pool, publishing, acknowledging),
//! and the intake task that collects jobs into batches.

use super::job::{JobRejection, ValidJob};
use super::{BATCHES_IN_FLIGHT, Predictor, ProcessBatch, STAGE, lock};
use crate::bus::{Bus, headers};
use crate::model::{ModelError, OnnxModel, error_chain, forecast_histories};
use crate::wire::{self, Rejection, SCHEMA_VERSION};
use actix::prelude::*;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What one batch did, for the counters and the logs.
#[derive(Debug, Default)]
pub(super) struct BatchOutcome {
    pub(super) sent: u64,
    pub(super) errors: u64,
    pub(super) ran: bool,
    pub(super) published: Vec<String>,
    pub(super) rejections: Vec<JobRejection>,
}

/// One prepared forecast: subject, id and payload.
struct Prepared {
    key: String,
    server: String,
    payload: Vec<u8>,
}

/// What a batch needs off the actor: the bus and the model.
pub(super) struct BatchWork {
    pub(super) bus: Bus,
    pub(super) jetstream: jetstream::Context,
    pub(super) model: Arc<Mutex<OnnxModel>>,
}

impl BatchWork {
    pub(super) async fn run(
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
            Err(problem) => Err(JobRejection::new(
                problem.kind,
                problem.reason,
                Some(&job.history.server),
            )),
        })
        .collect())
}

/// Collects jobs into batches (`max_batch` jobs, or what arrived within `max_wait` of the
/// first) and hands them to the actor, at most [`BATCHES_IN_FLIGHT`] at a time.
pub(super) async fn intake(
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
