//! The one way a stage publishes: a **bounded** queue in front of one publishing task, so
//! handlers never await the bus, messages leave in the order they were queued (an alert's
//! raise always before its escalation), and a stage that produces faster than the bus takes
//! is slowed down instead of growing without bound.
//!
//! - **Back-pressure.** An actor queues with [`Outbox::push`]: when the queue is full it
//!   counts `outbox_full` and waits (actix `ctx.wait`), so the actor takes no further input
//!   until there is room again. An async task (the generator's clock) uses
//!   [`Outbox::send`], which simply waits.
//! - **Streams.** A message for a stream ([`Envelope::stream`]) goes through a
//!   [`StreamPublisher`] (a window of acknowledgements): it counts as published once its
//!   stream stored it, as a publish error when it did not. An [`Envelope::with_receipt`]
//!   tells its sender which (the predictor acknowledges a job only after its forecast is
//!   stored). Other messages are core publishes, published once the client sent them.
//! - **Flush.** [`Outbox::flush`] returns once everything queued before it is out and
//!   acknowledged: the last step of a drain, and the generator's "every sample of a step
//!   stored before the next is computed".

use super::counters::StageCounters;
use crate::bus::{BusError, Receipt, STREAM_PUBLISH_WINDOW, StreamPublisher, headers};
use crate::ratelog::RateLimited;
use crate::wire::{self, WireMessage};
use actix::fut::wrap_future;
use actix::prelude::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Messages a stage's outbox holds before its sender waits: a step of a 30,000-server fleet
/// (a risk score per sample and per forecast) queues at once, so back-pressure only slows a
/// stage that produces faster than the bus takes for longer than a step (about 30 MB of
/// risk scores at most); the stream window behind it adds 1,024 in flight.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// One message to publish.
#[derive(Debug)]
pub struct Envelope {
    subject: String,
    payload: Bytes,
    stored: bool,
    msg_id: Option<String>,
    receipt: Option<Receipt>,
}

impl Envelope {
    /// `message` as a core message on `subject`.
    pub fn core<T: WireMessage>(subject: String, message: &T) -> Envelope {
        Envelope::encoded(subject, wire::encode(message).into(), false)
    }

    /// `message` on `subject`, which a JetStream stream captures (published with an
    /// acknowledgement).
    pub fn stream<T: WireMessage>(subject: String, message: &T) -> Envelope {
        Envelope::encoded(subject, wire::encode(message).into(), true)
    }

    /// An already encoded MessagePack payload; `stored` when a stream captures `subject`.
    pub fn encoded(subject: String, payload: Bytes, stored: bool) -> Envelope {
        Envelope {
            subject,
            payload,
            stored,
            msg_id: None,
            receipt: None,
        }
    }

    /// Sets the `Nats-Msg-Id` header, by which a stream drops a duplicate inside its
    /// duplicate window.
    #[must_use]
    pub fn with_msg_id(mut self, id: impl Into<String>) -> Envelope {
        self.msg_id = Some(id.into());
        self
    }

    /// Asks to be told whether the message went out (for a stream: was stored): the
    /// receiver resolves to `true` or `false` once that is known.
    #[must_use]
    pub fn with_receipt(mut self) -> (Envelope, oneshot::Receiver<bool>) {
        let (sender, receiver) = oneshot::channel();
        self.receipt = Some(sender);
        (self, receiver)
    }

    /// Its subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

enum Item {
    Send(Envelope),
    Flush(oneshot::Sender<()>),
}

/// A stage's outbox: cheap to clone (clones share the queue and the task). Messages leave
/// in the order each producer queued them.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Item>,
    counters: StageCounters,
    /// Messages an actor queued while the queue was full, oldest first: the actor waits
    /// until they are all in the queue (actix runs an actor's waits last-in first-out, so
    /// each message cannot wait on its own).
    overflow: Arc<Mutex<VecDeque<Item>>>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Send(envelope) => write!(f, "Send({})", envelope.subject),
            Item::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Outbox {
    /// Starts the publishing task on the current runtime, holding at most `capacity`
    /// (at least 1) messages; its results go into `counters`, its warnings name `stage`.
    pub fn start(
        client: async_nats::Client,
        counters: StageCounters,
        stage: &'static str,
        capacity: usize,
    ) -> Outbox {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(publish_loop(client, receiver, counters.clone(), stage));
        Outbox {
            sender,
            counters,
            overflow: Arc::default(),
        }
    }

    /// Queues `envelope` from inside an actor. When the queue is full it counts
    /// `outbox_full` and makes the actor wait for room (no other message or input is
    /// handled meanwhile): the back-pressure.
    pub fn push<A>(&self, ctx: &mut Context<A>, envelope: Envelope)
    where
        A: Actor<Context = Context<A>>,
    {
        let mut overflow = self.overflow.lock().expect("outbox overflow lock");
        if !overflow.is_empty() {
            // The actor is about to wait for room: queue behind what is waiting.
            overflow.push_back(Item::Send(envelope));
            return;
        }
        match self.sender.try_send(Item::Send(envelope)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.counters.outbox_full();
                overflow.push_back(item);
                let sender = self.sender.clone();
                let waiting = self.overflow.clone();
                ctx.wait(wrap_future(async move {
                    loop {
                        let next = waiting.lock().expect("outbox overflow lock").pop_front();
                        let Some(item) = next else { break };
                        // The task only ends when every sender is gone; we hold one.
                        let _ = sender.send(item).await;
                    }
                }));
            }
        }
    }

    /// Queues `envelope`, waiting for room when the queue is full (counted as
    /// `outbox_full`).
    pub async fn send(&self, envelope: Envelope) {
        match self.sender.try_send(Item::Send(envelope)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.counters.outbox_full();
                let _ = self.sender.send(item).await;
            }
        }
    }

    /// Returns once every message queued before this call is out: core messages written to
    /// the connection, stream messages acknowledged (or counted as not stored).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.sender.send(Item::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Publishes the queue in order until every sender is gone.
async fn publish_loop(
    client: async_nats::Client,
    mut receiver: mpsc::Receiver<Item>,
    counters: StageCounters,
    stage: &'static str,
) {
    let mut stream = StreamPublisher::new(client.clone(), STREAM_PUBLISH_WINDOW);
    let mut failure_log = RateLimited::default();
    let mut settle = |settled: crate::bus::Settled| {
        counters.published(settled.stored);
        counters.publish_errors(settled.failed);
    };
    loop {
        // When nothing is queued, settle every acknowledgement outstanding before waiting for
        // more, so a failure is counted without waiting for more traffic. (Settling one at a
        // time while taking new messages was measured slower: on a busy core the task then
        // wakes for every message instead of taking a burst at once.)
        let item = match receiver.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                settle(stream.settle().await);
                match receiver.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let envelope = match item {
            Item::Send(envelope) => envelope,
            Item::Flush(done) => {
                settle(stream.settle().await);
                let _ = client.flush().await;
                let _ = done.send(());
                continue;
            }
        };
        let Envelope {
            subject,
            payload,
            stored,
            msg_id,
            receipt,
        } = envelope;
        let mut message_headers = headers();
        if let Some(id) = msg_id {
            message_headers.insert("Nats-Msg-Id", id.as_str());
        }
        let result = if stored {
            stream
                .publish_tracked(subject, payload, message_headers, receipt)
                .await
                .map(&mut settle)
        } else {
            let sent = client
                .publish_with_headers(subject.clone(), message_headers, payload)
                .await
                .map_err(|source| BusError::Publish { subject, source });
            if let Some(receipt) = receipt {
                let _ = receipt.send(sent.is_ok());
            }
            sent.map(|()| counters.published(1))
        };
        if let Err(error) = result {
            counters.publish_errors(1);
            if let Some(held_back) = failure_log.check() {
                tracing::warn!(stage, %error, held_back, "publish failed (logged at most every 10 s)");
            }
        }
    }
    settle(stream.settle().await);
}
