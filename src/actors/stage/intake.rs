//! A stage's input on a connection of its own: its subscriptions never wait behind other
//! traffic, its lag is measurable (what the connection received minus what the stage took,
//! see [`StageCounters::track_connection`]), and it drains cleanly: [`Intake::drain`] stops
//! the server sending, lets every message already received reach the actor, and returns
//! once every input stream has ended.

use super::counters::StageCounters;
use crate::bus::{BusError, connect_client};
use crate::settings::NatsSettings;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

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
    Flush(#[source] async_nats::client::FlushError),
}

/// A stage's input connection and the streams read from it.
#[derive(Debug, Clone)]
pub struct Intake {
    client: async_nats::Client,
    open: Arc<Open>,
}

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
    /// [`IntakeError::Flush`] when the connection fails.
    pub async fn confirm(&self) -> Result<(), IntakeError> {
        self.client.flush().await.map_err(IntakeError::Flush)
    }

    /// Whether [`Intake::drain`] was called: a stream that ends now ends as planned.
    pub fn is_draining(&self) -> bool {
        self.open.draining.load(Ordering::SeqCst)
    }

    /// The connection, for a stage that reads JetStream through it.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Stops the input: unsubscribes, lets what was already received reach the stage, and
    /// returns once every tracked stream has ended.
    pub async fn drain(&self) {
        self.open.draining.store(true, Ordering::SeqCst);
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
