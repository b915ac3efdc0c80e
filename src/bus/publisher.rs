//! Publishing into JetStream streams with a window of acknowledgements.

use super::{BusError, headers};
use crate::ratelog::RateLimited;
use crate::wire::{self, WireMessage};
use async_nats::jetstream;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// Acknowledgements a [`StreamPublisher`] keeps outstanding by default: enough to keep the
/// loopback busy, few enough that a burst of 20-kB predict jobs stays far below a stream's
/// ingest buffer.
pub const STREAM_PUBLISH_WINDOW: usize = 1024;

/// Told whether one message was stored: `true` once its stream acknowledged it.
pub type Receipt = oneshot::Sender<bool>;

/// How many of the acknowledgements waited for said stored, and how many did not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Messages their stream acknowledged.
    pub stored: u64,
    /// Messages their stream did not store (refused, no stream, timed out).
    pub failed: u64,
}

impl std::ops::AddAssign for Settled {
    fn add_assign(&mut self, other: Settled) {
        self.stored += other.stored;
        self.failed += other.failed;
    }
}

/// Publishes into JetStream streams, keeping at most `window` acknowledgements outstanding.
///
/// A core publish into a stream has no back-pressure: the server queues it for the stream
/// and, past its ingest buffer (`max_buffered_msgs`, 10,000 messages by default), drops the
/// rest of a burst with one warning in its log. Waiting for acknowledgements, a window at a
/// time, makes a burst (a step of a large fleet, a backfill) go at the store's pace and turns
/// every message the stream did not take into a counted, logged error.
pub struct StreamPublisher {
    jetstream: jetstream::Context,
    pending: VecDeque<Pending>,
    window: usize,
    unstored_log: RateLimited,
    retry_log: RateLimited,
    /// Since when no acknowledgement came (`None` while they do): messages are sent again
    /// only within [`RETRY_WINDOW`] of it.
    failing_since: Option<std::time::Instant>,
    /// Messages sent again so far.
    resent: u64,
    /// How long an acknowledgement is waited for, counted from the send.
    ack_timeout: std::time::Duration,
}

impl std::fmt::Debug for StreamPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPublisher")
            .field("outstanding", &self.pending.len())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// An acknowledgement to wait for.
type AckFuture = <jetstream::context::PublishAckFuture as std::future::IntoFuture>::IntoFuture;

struct Pending {
    subject: String,
    /// What was sent, to send it again when no acknowledgement comes.
    payload: bytes::Bytes,
    headers: async_nats::HeaderMap,
    /// Polled in place (it is boxed), so waiting for it can be given up and taken up again;
    /// `None` once it failed and the message is to be sent again.
    ack: Option<AckFuture>,
    /// When it was (last) sent: its acknowledgement is due [`StreamPublisher`]'s
    /// `ack_timeout` after.
    sent_at: tokio::time::Instant,
    receipt: Option<Receipt>,
}

/// How long a publisher keeps sending a message again while no stream acknowledges
/// anything (a cluster node died and a stream's leader is being elected, the connection is
/// moving to another node; an election took more than 5 s on a loaded machine): long enough
/// for a failover, short enough that a stream that is really gone (or a subject no stream
/// captures: nobody answers, as for a stream without a leader yet) stalls a stage only once
/// per 20 s. Any acknowledgement starts the window anew.
pub const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

/// How long an acknowledgement is waited for by default, counted from the send (async-nats's
/// own timeout starts only when its future is first polled, which for the newer messages of
/// a window is when the older ones are settled).
pub const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The least time between two sends of one message (a "no responders" answer comes at once).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether a publish that was not acknowledged may be stored when sent again: no answer in
/// time, nobody answering for the stream (no leader yet), the connection lost, or the server
/// saying something else (JetStream unavailable, no quorum). A message the client refused
/// (too large) or a stream's expectation failed is not sent again.
fn may_succeed_again(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::Other
    )
}

impl StreamPublisher {
    /// A publisher on `client` with at most `window` (at least 1) acknowledgements outstanding.
    pub fn new(client: async_nats::Client, window: usize) -> StreamPublisher {
        StreamPublisher {
            jetstream: jetstream::new(client),
            pending: VecDeque::new(),
            window: window.max(1),
            unstored_log: RateLimited::default(),
            retry_log: RateLimited::default(),
            failing_since: None,
            resent: 0,
            ack_timeout: ACK_TIMEOUT,
        }
    }

    /// The same publisher, waiting `timeout` for each acknowledgement instead of
    /// [`ACK_TIMEOUT`].
    #[must_use]
    pub fn with_ack_timeout(mut self, timeout: std::time::Duration) -> StreamPublisher {
        self.jetstream.set_timeout(timeout);
        self.ack_timeout = timeout;
        self
    }

    /// Sends `payload` (MessagePack, with the content-type header) to `subject`, first waiting
    /// for the oldest acknowledgement when `window` are outstanding. Returns how many of the
    /// earlier publishes it waited for were not stored (each logged, rate-limited).
    ///
    /// # Errors
    /// [`BusError::StreamPublish`] when the message cannot be sent.
    pub async fn publish(
        &mut self,
        subject: String,
        payload: bytes::Bytes,
    ) -> Result<u64, BusError> {
        let settled = self
            .publish_tracked(subject, payload, headers(), None)
            .await?;
        Ok(settled.failed)
    }

    /// Encodes `message` and publishes it as [`StreamPublisher::publish`] does.
    ///
    /// # Errors
    /// As [`StreamPublisher::publish`].
    pub async fn publish_message<T: WireMessage>(
        &mut self,
        subject: String,
        message: &T,
    ) -> Result<u64, BusError> {
        self.publish(subject, wire::encode(message).into()).await
    }

    /// Sends `payload` with `headers` to `subject`; `receipt`, when given, is told whether the
    /// stream stored it once its acknowledgement is in. Returns what the acknowledgements
    /// waited for (to keep the window) said.
    ///
    /// # Errors
    /// [`BusError::StreamPublish`] when the message cannot be sent (the receipt is told
    /// `false`).
    pub async fn publish_tracked(
        &mut self,
        subject: String,
        payload: bytes::Bytes,
        headers: async_nats::HeaderMap,
        receipt: Option<Receipt>,
    ) -> Result<Settled, BusError> {
        let mut settled = Settled::default();
        while self.pending.len() >= self.window {
            settled += self.await_oldest().await;
        }
        match self
            .jetstream
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await
        {
            Ok(ack) => {
                self.pending.push_back(Pending {
                    subject,
                    payload,
                    headers,
                    ack: Some(std::future::IntoFuture::into_future(ack)),
                    sent_at: tokio::time::Instant::now(),
                    receipt,
                });
                Ok(settled)
            }
            Err(source) => {
                if let Some(receipt) = receipt {
                    let _ = receipt.send(false);
                }
                Err(BusError::StreamPublish { subject, source })
            }
        }
    }

    /// Waits for every outstanding acknowledgement; returns how many publishes were not
    /// stored.
    pub async fn flush(&mut self) -> u64 {
        self.settle().await.failed
    }

    /// Waits for every outstanding acknowledgement; returns what they said.
    pub async fn settle(&mut self) -> Settled {
        let mut settled = Settled::default();
        while !self.pending.is_empty() {
            settled += self.await_oldest().await;
        }
        settled
    }

    /// Acknowledgements outstanding.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Waits for the oldest outstanding acknowledgement (none: at once). Cancel-safe: when
    /// the wait is given up (a `select!` took another branch), the acknowledgement stays
    /// outstanding and the next call waits for it again.
    pub async fn settle_next(&mut self) -> Settled {
        self.await_oldest().await
    }

    /// Messages sent again because no acknowledgement came (see [`RETRY_WINDOW`]).
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Waits for the oldest acknowledgement, until the acknowledgement timeout
    /// ([`ACK_TIMEOUT`] by default) after it was sent; a
    /// publish that failed in a way that may pass (see [`may_succeed_again`]) is sent again,
    /// same subject, payload and headers (its `Nats-Msg-Id` too, so a copy the stream did
    /// store is dropped), no sooner than [`RETRY_PAUSE`] after its last send, for as long as
    /// no acknowledgement has come for [`RETRY_WINDOW`]. Messages sent again may be stored
    /// after newer ones of the window.
    ///
    /// Counting each deadline from the send matters after a failover: every message of the
    /// window sent to the dead leader is lost, and waiting for each one's timeout only once
    /// the one before it was settled stood a stage still 5 s per lost message.
    async fn await_oldest(&mut self) -> Settled {
        let result = loop {
            let Some(oldest) = self.pending.front_mut() else {
                return Settled::default();
            };
            let error = match &mut oldest.ack {
                Some(ack) => {
                    let due = oldest.sent_at + self.ack_timeout;
                    match tokio::time::timeout_at(due, ack).await {
                        Ok(Ok(ack)) => break Ok(ack),
                        Ok(Err(error)) => error,
                        Err(_elapsed) => PublishError::new(PublishErrorKind::TimedOut),
                    }
                }
                None => {
                    tokio::time::sleep_until(oldest.sent_at + RETRY_PAUSE).await;
                    oldest.sent_at = tokio::time::Instant::now();
                    match self
                        .jetstream
                        .publish_with_headers(
                            oldest.subject.clone(),
                            oldest.headers.clone(),
                            oldest.payload.clone(),
                        )
                        .await
                    {
                        Ok(ack) => {
                            oldest.ack = Some(std::future::IntoFuture::into_future(ack));
                            self.resent += 1;
                            continue;
                        }
                        Err(error) => error,
                    }
                }
            };
            let since = *self
                .failing_since
                .get_or_insert_with(std::time::Instant::now);
            if !may_succeed_again(error.kind()) || since.elapsed() >= RETRY_WINDOW {
                break Err(error);
            }
            // Cancel-safe: a wait given up here sends the message again at the next call.
            oldest.ack = None;
            if let Some(held_back) = self.retry_log.check() {
                tracing::warn!(
                    subject = oldest.subject,
                    %error,
                    held_back,
                    "a stream did not acknowledge a message: sending it again (logged at most every 10 s)"
                );
            }
        };
        if result.is_ok() {
            self.failing_since = None;
        }
        let Some(Pending {
            subject, receipt, ..
        }) = self.pending.pop_front()
        else {
            return Settled::default();
        };
        if let Some(receipt) = receipt {
            let _ = receipt.send(result.is_ok());
        }
        let Err(error) = result else {
            return Settled {
                stored: 1,
                failed: 0,
            };
        };
        if let Some(held_back) = self.unstored_log.check() {
            tracing::warn!(
                subject,
                %error,
                failed_since_last_warning = held_back,
                "a stream did not store a message (logged at most every 10 s)"
            );
        }
        Settled {
            stored: 0,
            failed: 1,
        }
    }
}
