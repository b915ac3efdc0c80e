//! Plumbing shared by the risk scorer and the alert router: received / published /
//! rejected / error counters readable through the actix message [`GetCounters`], an
//! in-order publishing [`Outbox`], rate-limited rejection logs, a [`Stop`] message, and
//! [`replay`], which reads a JetStream stream back at start-up to rebuild an actor's view.

use crate::bus::{Bus, BusError, STREAM_PUBLISH_WINDOW, StreamPublisher, headers};
use crate::subjects::StreamKind;
use actix::prelude::*;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of a stage's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages taken off the bus.
    pub received: u64,
    /// Messages published (confirmed handed to the client).
    pub published: u64,
    /// Inputs refused to the dead-letter subject.
    pub rejected: u64,
    /// Failures of the stage itself (a publish that failed).
    pub errors: u64,
}

/// Asks a stage for its [`Counters`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Counters")]
pub struct GetCounters;

/// The live counters; cheap to clone (one shared allocation), updated from any thread.
#[derive(Debug, Clone, Default)]
pub struct StageCounters {
    inner: Arc<[AtomicU64; 4]>,
}

impl StageCounters {
    /// Counts one received message.
    pub fn received(&self) {
        self.inner[0].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one published message.
    pub fn published(&self) {
        self.inner[1].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one rejected input.
    pub fn rejected(&self) {
        self.inner[2].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.inner[3].fetch_add(1, Ordering::Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> Counters {
        let load = |index: usize| self.inner[index].load(Ordering::Relaxed);
        Counters {
            received: load(0),
            published: load(1),
            rejected: load(2),
            errors: load(3),
        }
    }
}

/// Publishes messages in the order they were queued, from one task, counting successes and
/// failures: the actors never await the bus inside a handler, yet an alert's raise always
/// leaves before its escalation. Messages for a stream go through a [`StreamPublisher`] (a
/// burst waits for the store instead of being dropped at its ingest buffer); the rest are
/// core messages.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: tokio::sync::mpsc::UnboundedSender<Outgoing>,
}

/// One queued message: subject, MessagePack payload, and whether a stream stores it.
type Outgoing = (String, Vec<u8>, bool);

impl Outbox {
    /// Starts the publishing task on the current runtime.
    pub fn start(
        client: async_nats::Client,
        counters: StageCounters,
        stage: &'static str,
    ) -> Outbox {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        let mut stream = StreamPublisher::new(client.clone(), STREAM_PUBLISH_WINDOW);
        tokio::spawn(async move {
            loop {
                let (next, unstored) = next_or_settle(&mut receiver, &mut stream).await;
                for _ in 0..unstored {
                    counters.error();
                }
                let Some((subject, payload, stored)) = next else {
                    break;
                };
                let result = if stored {
                    stream.publish(subject.clone(), payload.into()).await
                } else {
                    client
                        .publish_with_headers(subject.clone(), headers(), payload.into())
                        .await
                        .map(|()| 0)
                        .map_err(|source| BusError::Publish {
                            subject: subject.clone(),
                            source,
                        })
                };
                match result {
                    Ok(unstored) => {
                        counters.published();
                        for _ in 0..unstored {
                            counters.error();
                        }
                    }
                    Err(error) => {
                        counters.error();
                        tracing::warn!(stage, subject, %error, "publish failed");
                    }
                }
            }
        });
        Outbox { sender }
    }

    /// Queues `message` for `subject` (a core message).
    pub fn send<T: crate::wire::WireMessage>(&self, subject: String, message: &T) {
        // The task only ends when every sender is gone, so this cannot fail while we hold one.
        let _ = self
            .sender
            .send((subject, crate::wire::encode(message), false));
    }

    /// Queues `message` for `subject`, which a JetStream stream captures: it counts as
    /// published once sent, and as an error too when the stream does not store it.
    pub fn send_to_stream<T: crate::wire::WireMessage>(&self, subject: String, message: &T) {
        let _ = self
            .sender
            .send((subject, crate::wire::encode(message), true));
    }
}

/// The next queued item, or `None` once every sender is gone. When nothing is queued it first
/// waits for `stream`'s outstanding acknowledgements, so a failure is counted without waiting
/// for more traffic; the second value is how many of those were not stored.
pub async fn next_or_settle<T>(
    receiver: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    stream: &mut StreamPublisher,
) -> (Option<T>, u64) {
    match receiver.try_recv() {
        Ok(item) => (Some(item), 0),
        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
            let unstored = stream.flush().await;
            (receiver.recv().await, unstored)
        }
        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => (None, 0),
    }
}

/// A stage's refused inputs: each one is counted, logged (at warn at most once per 10 s, at
/// debug otherwise) and published on `rejected.<stage>` with its reason.
#[derive(Debug)]
pub struct Rejects {
    stage: &'static str,
    subject: String,
    last_warn: Option<std::time::Instant>,
}

impl Rejects {
    /// Rejections of `stage`, published on its `rejected.<stage>` subject.
    pub fn new(stage: &'static str, subjects: &crate::subjects::Subjects) -> Rejects {
        Rejects {
            stage,
            subject: subjects.rejected(stage),
            last_warn: None,
        }
    }

    /// Refuses the input that arrived on `subject`.
    pub fn reject(
        &mut self,
        counters: &StageCounters,
        outbox: &Outbox,
        subject: &str,
        server: Option<String>,
        kind: crate::wire::RejectKind,
        reason: String,
    ) {
        counters.rejected();
        let stage = self.stage;
        let now = std::time::Instant::now();
        if self
            .last_warn
            .is_none_or(|last| now.duration_since(last) >= std::time::Duration::from_secs(10))
        {
            self.last_warn = Some(now);
            tracing::warn!(
                stage,
                subject,
                reason,
                "input rejected (further ones for 10 s at debug)"
            );
        } else {
            tracing::debug!(stage, subject, reason, "input rejected");
        }
        let rejection = crate::wire::Rejection {
            v: crate::wire::SCHEMA_VERSION,
            stage: stage.to_string(),
            subject: subject.to_string(),
            server,
            kind,
            reason,
            at_ms: crate::wire::now_ms(),
        };
        outbox.send(self.subject.clone(), &rejection);
    }
}

/// Asks a stage to stop (its subscriptions end with it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Why a stream could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("cannot replay stream {stream}: {reason}")]
pub struct ReplayError {
    /// The stream.
    pub stream: String,
    /// What went wrong.
    pub reason: String,
}

/// Reads back the messages of one JetStream stream on subjects matching `filter`
/// (`LastPerSubject`: the latest per subject; `All`: everything kept), oldest first, with an ordered consumer that is gone
/// afterwards. An empty stream gives an empty list.
///
/// # Errors
/// [`ReplayError`] when the stream is missing, the consumer cannot be made, or a message
/// does not come within 5 s.
pub async fn replay(
    bus: &Bus,
    kind: StreamKind,
    filter: String,
    deliver_policy: DeliverPolicy,
) -> Result<Vec<async_nats::Message>, ReplayError> {
    let name = bus.subjects().stream_name(kind);
    let error = |reason: String| ReplayError {
        stream: name.clone(),
        reason,
    };
    let stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .map_err(|e| error(e.to_string()))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: filter,
            ..Default::default()
        })
        .await
        .map_err(|e| error(e.to_string()))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| error(e.to_string()))?;
    let mut replayed = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .map_err(|_| error("no message within 5 s".into()))?
            .ok_or_else(|| error("the consumer ended early".into()))?
            .map_err(|e| error(e.to_string()))?;
        let pending = message.info().map_err(|e| error(e.to_string()))?.pending;
        replayed.push(message.message);
        if pending == 0 {
            return Ok(replayed);
        }
    }
}
