//! A stage's input on a connection of its own: its subscriptions never wait behind other
//! traffic, its lag is measurable (what the connection received minus what the stage took,
//! see [`StageCounters::track_connection`]), and it drains cleanly: [`Intake::drain`] makes
//! sure every message the server sent before the drain has reached the stage and been
//! counted `received`, then unsubscribes and returns once every input stream has ended.
//!
//! (The client's own drain is not enough: it drops a subscription as soon as its
//! unsubscription is written, losing what the server had sent but the client not yet read.)

use super::counters::StageCounters;
use crate::bus::{BusError, connect_client, round_trip};
use crate::settings::NatsSettings;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a stage's input could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Its connection could not be opened.
    #[error("input connection")]
    Connect(#[source] BusError),
    /// A subscription was refused.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The subscriptions could not be confirmed with the server.
    #[error("cannot confirm the subscriptions with the server")]
    Confirm(#[source] BusError),
}

/// A stage's input connection and the streams read from it.
#[derive(Debug, Clone)]
pub struct Intake {
    client: async_nats::Client,
    counters: StageCounters,
    open: Arc<Open>,
}

/// Longest a drain waits for the stage to take what was already received (a message the
/// client dropped as a slow consumer is never taken).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Open {
    streams: AtomicUsize,
    ended: tokio::sync::Notify,
    draining: AtomicBool,
}

impl Intake {
    /// Opens the input connection of `stage` (named `fleetcast-<stage>-intake`) and makes it
    /// the source of `counters`' lag.
    ///
    /// # Errors
    /// [`IntakeError::Connect`] when nothing answers.
    pub async fn connect(
        settings: &NatsSettings,
        stage: &str,
        counters: &StageCounters,
    ) -> Result<Intake, IntakeError> {
        let client = connect_client(settings, &format!("fleetcast-{stage}-intake"))
            .await
            .map_err(IntakeError::Connect)?;
        counters.track_connection(&client);
        Ok(Intake {
            client,
            counters: counters.clone(),
            open: Arc::default(),
        })
    }

    /// Subscribes to `subject`; the stream ends when the intake drains.
    ///
    /// # Errors
    /// [`IntakeError::Subscribe`] when the client refuses.
    pub async fn subscribe(
        &self,
        subject: String,
    ) -> Result<Tracked<async_nats::Subscriber>, IntakeError> {
        let subscriber = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| IntakeError::Subscribe { subject, source })?;
        Ok(self.track(subscriber))
    }

    /// Counts `stream` as one of this intake's inputs, so [`Intake::drain`] waits for its end.
    pub fn track<S: Stream + Unpin>(&self, stream: S) -> Tracked<S> {
        self.open.streams.fetch_add(1, Ordering::SeqCst);
        Tracked {
            stream,
            open: Some(self.open.clone()),
        }
    }

    /// Returns once the server has every subscription made so far.
    ///
    /// # Errors
    /// [`IntakeError::Confirm`] when the round trip fails.
    pub async fn confirm(&self) -> Result<(), IntakeError> {
        self.round_trip().await.map_err(IntakeError::Confirm)
    }

    /// A round trip through the server, its echo counted as no input.
    async fn round_trip(&self) -> Result<(), BusError> {
        let result = round_trip(&self.client).await;
        if result.is_ok() {
            self.counters.not_input(1);
        }
        result
    }

    /// Whether [`Intake::drain`] was called: a stream that ends now ends as planned.
    pub fn is_draining(&self) -> bool {
        self.open.draining.load(Ordering::SeqCst)
    }

    /// The connection, for a stage that reads JetStream through it.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Stops the input: waits until the stage has taken (counted `received`) every message
    /// the server sent before this call, unsubscribes, and returns once every tracked stream
    /// has ended.
    pub async fn drain(&self) {
        self.open.draining.store(true, Ordering::SeqCst);
        // After the round trip every message sent before it has been read and queued.
        if self.round_trip().await.is_ok() {
            let read = self.counters.input_read().unwrap_or(0);
            if let Err(counters) = self
                .counters
                .wait_until(|counters| counters.received >= read, DRAIN_WAIT)
                .await
            {
                tracing::warn!(
                    read,
                    taken = counters.received,
                    "draining: the stage did not take every message read"
                );
            }
        }
        if let Err(error) = self.client.drain().await {
            tracing::warn!(%error, "cannot drain the input connection");
        }
        loop {
            let ended = self.open.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.open.streams.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// An input stream that tells its [`Intake`] when it ends (or is dropped).
#[derive(Debug)]
pub struct Tracked<S> {
    stream: S,
    open: Option<Arc<Open>>,
}

impl<S> Tracked<S> {
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            open.streams.fetch_sub(1, Ordering::SeqCst);
            open.ended.notify_waiters();
        }
    }
}

impl<S: Stream + Unpin> Stream for Tracked<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.stream).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.close();
        }
        polled
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.close();
    }
}
