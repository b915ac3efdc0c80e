//! A stage's input subscriptions, with a measured lag and a drain that loses nothing.
//!
//! - **Lag.** Each input stream ([`Tracked`]) takes what the client has already received for
//!   its subscription into a look-ahead buffer of its own (at most [`LOOK_AHEAD`] messages,
//!   moved, not copied) before handing the actor the next one; what waits there is the
//!   stage's `consumer_lag`. A core subscription has no server-side queue to ask about.
//! - **Drain.** [`Intake::drain`] makes a round trip through the server (after it, every
//!   message the server sent before the drain is in the subscriptions' queues), then each
//!   stream ends as soon as its queue is empty: everything received before the drain is
//!   handled, nothing after it is taken. (The client's own drain is not enough: it drops a
//!   subscription as soon as its unsubscription is written, losing what it has not read.)
//! - **Connection.** The subscriptions share the bus's connection. A connection of their own
//!   was measured slower in one process: at 4,000 servers the alert came 4.4 s after its
//!   sample instead of 0.9 s (`benches/e2e.rs`), as nats-server holds back a connection's
//!   publishes while another one of the same process reads slowly.

use super::counters::StageCounters;
use crate::bus::{Bus, BusError, round_trip};
use futures::Stream;
use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Messages a stream takes ahead from its subscription's queue (the most lag it can see).
pub const LOOK_AHEAD: usize = 65_536;

/// Why a stage's input could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
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

/// A stage's input: its subscriptions and the streams read from them.
#[derive(Debug, Clone)]
pub struct Intake {
    client: async_nats::Client,
    open: Arc<Open>,
}

#[derive(Debug)]
struct Open {
    counters: StageCounters,
    /// Streams not ended yet.
    streams: AtomicUsize,
    ended: tokio::sync::Notify,
    /// Messages waiting in the streams' look-ahead buffers.
    waiting: AtomicU64,
    /// A drain has begun.
    draining: AtomicBool,
    /// The drain's round trip is done: a stream whose queue is empty ends.
    cut: AtomicBool,
    /// Each stream's waker, to end idle streams at the cut.
    wakers: Mutex<Vec<Arc<AtomicWaker>>>,
}

impl Intake {
    /// The input of a stage counting into `counters`, on `bus`'s connection.
    pub fn new(bus: &Bus, counters: &StageCounters) -> Intake {
        Intake {
            client: bus.client().clone(),
            open: Arc::new(Open {
                counters: counters.clone(),
                streams: AtomicUsize::new(0),
                ended: tokio::sync::Notify::new(),
                waiting: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                cut: AtomicBool::new(false),
                wakers: Mutex::new(Vec::new()),
            }),
        }
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

    /// Makes `stream` one of this intake's inputs: its waiting messages count as lag, and
    /// [`Intake::drain`] ends it.
    pub fn track<S: Stream + Unpin>(&self, stream: S) -> Tracked<S> {
        self.open.streams.fetch_add(1, Ordering::SeqCst);
        let waker = Arc::new(AtomicWaker::new());
        self.open
            .wakers
            .lock()
            .expect("wakers lock")
            .push(waker.clone());
        Tracked {
            stream,
            buffer: VecDeque::new(),
            inner_done: false,
            waker,
            open: Some(self.open.clone()),
        }
    }

    /// Returns once the server has every subscription made so far.
    ///
    /// # Errors
    /// [`IntakeError::Confirm`] when the round trip fails.
    pub async fn confirm(&self) -> Result<(), IntakeError> {
        round_trip(&self.client).await.map_err(IntakeError::Confirm)
    }

    /// Whether [`Intake::drain`] was called: a stream that ends now ends as planned.
    pub fn is_draining(&self) -> bool {
        self.open.draining.load(Ordering::SeqCst)
    }

    /// Stops the input: every message the server sent before this call reaches the stage,
    /// then every stream ends; returns once they all have.
    pub async fn drain(&self) {
        self.open.draining.store(true, Ordering::SeqCst);
        if let Err(error) = round_trip(&self.client).await {
            tracing::warn!(%error, "draining without a round trip: messages on their way may be left");
        }
        self.open.cut.store(true, Ordering::SeqCst);
        for waker in self.open.wakers.lock().expect("wakers lock").iter() {
            waker.wake();
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

/// An input stream of an [`Intake`]: it looks ahead into its subscription's queue (the
/// stage's lag) and ends at a drain's cut once that queue is empty.
#[derive(Debug)]
pub struct Tracked<S: Stream> {
    stream: S,
    buffer: VecDeque<S::Item>,
    inner_done: bool,
    waker: Arc<AtomicWaker>,
    open: Option<Arc<Open>>,
}

impl<S: Stream> Tracked<S> {
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            open.waiting
                .fetch_sub(self.buffer.len() as u64, Ordering::SeqCst);
            open.streams.fetch_sub(1, Ordering::SeqCst);
            open.ended.notify_waiters();
        }
    }
}

// The buffered items are never pinned: moving a `Tracked` moves them safely.
impl<S: Stream + Unpin> Unpin for Tracked<S> {}

impl<S: Stream + Unpin> Stream for Tracked<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let Some(open) = this.open.clone() else {
            return Poll::Ready(None);
        };
        this.waker.register(cx.waker());
        let mut taken = 0;
        // Whether the subscription's queue was seen empty. A `Pending` once the task's
        // cooperative budget is spent says nothing about the queue (tokio polls again).
        let mut seen_empty = false;
        while !this.inner_done && this.buffer.len() < LOOK_AHEAD {
            match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    this.buffer.push_back(item);
                    taken += 1;
                }
                Poll::Ready(None) => this.inner_done = true,
                Poll::Pending => {
                    seen_empty = tokio::task::coop::has_budget_remaining();
                    break;
                }
            }
        }
        let next = this.buffer.pop_front();
        let handed = u64::from(next.is_some());
        let waiting = if taken >= handed {
            open.waiting.fetch_add(taken - handed, Ordering::SeqCst) + (taken - handed)
        } else {
            open.waiting.fetch_sub(handed - taken, Ordering::SeqCst) - (handed - taken)
        };
        open.counters.set_lag(waiting);
        if let Some(item) = next {
            return Poll::Ready(Some(item));
        }
        // Nothing left: the subscription ended, or its queue is empty at a drain's cut.
        if this.inner_done || (seen_empty && open.cut.load(Ordering::SeqCst)) {
            this.close();
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<S: Stream> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.close();
    }
}
