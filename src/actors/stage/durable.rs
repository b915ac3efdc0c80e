//! A stage's input through JetStream durable pull consumers: nothing published while the
//! stage is slow, busy or stopped is lost, and each input is acknowledged only once what it
//! caused is stored.
//!
//! - **Consumers.** [`Durable::open`] binds one durable consumer per input stream, named by
//!   [`Subjects::durable_consumer`] (`risk_scorer-metrics`, ...), with explicit
//!   acknowledgements, `nats.ack_wait_seconds` and `nats.max_ack_pending`. A consumer made
//!   for the first time starts at the stream's next message (`DeliverPolicy::New`: the
//!   stage reads the state it needs back with [`replay`](super::replay) instead of routing
//!   a day of history); one that exists resumes from its acknowledgement floor, so inputs
//!   published while no instance ran are handed out when one starts.
//! - **Deliveries.** The consumers' messages come to the actor as one stream of
//!   [`Delivery`]s (each consumer's messages in stream order). A delivery says whether it was
//!   handed out before (`redelivered`: an instance took it and did not acknowledge it in
//!   time, or died). The consumers' pending counts are the stage's `consumer_lag`.
//! - **Acknowledgement.** The actor acknowledges a delivery with [`Durable::ack`] when it
//!   caused nothing to publish, or [`Durable::ack_after`] with the receipts of what it
//!   published: acknowledged once every one was stored, handed back (`Nak`, redelivered a
//!   second later) when one was not. A stage killed between publishing and acknowledging
//!   gets the input again; its outputs carry a `Nats-Msg-Id`, so the stream drops the
//!   republished copy inside its duplicate window (2 minutes).
//! - **Losses are counted.** A stream keeps a bounded history (`nats.forecast_history`,
//!   `nats.risk_history` per server); messages it dropped before the consumer handed them
//!   out show as a gap in the stream sequence and are counted (`skipped`, warned), never
//!   silent. A replicated stream may also skip sequences that never held a message (seen
//!   after a node of a cluster was killed, with every input accounted for), so `skipped`
//!   is at most what was dropped. Consumer errors (a missed heartbeat) are counted
//!   (`consumer_errors`); the consumer goes on by itself.
//! - **Partitioned.** With `partitions.count` above 1, [`Durable::open_stage`] reads the
//!   stage's partitioned input instead ([`partition`](super::partition)): one consumer per
//!   partition the instance owns, the rest of this module (acknowledgements, drain) alike;
//!   the actor is also handed [`Input::Claimed`] and [`Input::Lost`].
//! - **Takeover.** One instance of a stage reads its consumers. When [`Durable::open`] finds
//!   messages handed out and never acknowledged (the previous instance died holding them),
//!   it rewinds the consumer to its acknowledgement floor (deletes it and makes it again
//!   from the floor's next sequence), so they come at once and in order, not after
//!   `ack_wait` behind newer ones; anything past the floor that was handled already is older
//!   than the state the stage read back (superseded) or republished under the same
//!   `Nats-Msg-Id` (dropped by the stream).
//! - **Drain.** [`Durable::stop`] ends the deliveries (what the client had fetched beyond
//!   is redelivered after `ack_wait`); [`Durable::settled`] waits for every acknowledgement
//!   to be sent.

use super::counters::{Extra, StageCounters};
use super::partition::Leases;
use crate::bus::Bus;
use crate::ratelog::RateLimited;
use crate::settings::{NatsSettings, Settings};
use crate::subjects::{StreamKind, Subjects};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};

/// The counters a stage reading through [`Durable`] declares among its extras.
pub const DURABLE_EXTRAS: [&str; 3] = ["redelivered", "skipped", "consumer_errors"];

/// Messages one pull asks for.
const PULL_BATCH: usize = 256;

/// How long a publish that was not stored waits before its input is handed out again.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// Why a stage's durable input could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open durable consumer {consumer} on stream {stream} ({step})")]
pub struct DurableError {
    /// The stream.
    pub stream: String,
    /// The consumer.
    pub consumer: String,
    /// What it was doing: `get stream`, `create consumer`, `rewind consumer`, `pull`.
    pub step: &'static str,
    /// What the server or client said.
    #[source]
    pub source: async_nats::Error,
}

/// One input handed out by a durable consumer.
#[derive(Debug)]
pub struct Delivery {
    /// The message (subject, payload, and its acknowledgement subject).
    pub message: jetstream::Message,
    /// Which stream it comes from.
    pub kind: StreamKind,
    /// Handed out before and not acknowledged (an instance died or was too slow).
    pub redelivered: bool,
    /// The partition it belongs to, when the stage runs partitioned
    /// ([`partition`](super::partition)); its subject is then the original one.
    pub partition: Option<u32>,
}

/// What a stage reading through [`Durable`] is handed, in order.
#[derive(Debug)]
// Deliveries are nearly every input: boxing them would allocate per message for the sake of
// the rare claim.
#[allow(clippy::large_enum_variant)]
pub enum Input {
    /// An input to handle and acknowledge.
    Delivery(Delivery),
    /// A partition this instance now owns: forget its servers, take `history` (its inputs
    /// up to its consumer's acknowledgement floor, oldest first, original subjects) in
    /// silently to rebuild their state; its deliveries follow.
    Claimed {
        /// The partition.
        partition: u32,
        /// Its inputs handled before, to rebuild from.
        history: Vec<async_nats::Message>,
    },
    /// A partition this instance lost (its lease was not renewed in time): forget its
    /// servers.
    Lost {
        /// The partition.
        partition: u32,
    },
}

/// The inputs of a stage, for `ctx.add_stream`.
pub type Deliveries = Pin<Box<dyn Stream<Item = Input> + Send>>;

/// A stage's durable input: acknowledgements and the drain. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Durable {
    client: async_nats::Client,
    stop: Arc<watch::Sender<bool>>,
    acks: Arc<Acks>,
    leases: Option<Arc<Leases>>,
}

#[derive(Debug)]
struct Acks {
    outstanding: AtomicUsize,
    idle: Notify,
    failures: Mutex<RateLimited>,
    stage: &'static str,
}

impl Durable {
    /// Opens `stage`'s input: with `partitions.count` above 1 the partitioned input
    /// ([`partition`](super::partition)) sourcing the streams of `inputs`, otherwise
    /// [`Durable::open`] on `inputs`.
    ///
    /// # Errors
    /// [`DurableError`] when a stream, a consumer or the lease bucket cannot be made.
    pub async fn open_stage(
        bus: &Bus,
        stage: &super::Stage,
        settings: &Settings,
        inputs: &[(StreamKind, String)],
    ) -> Result<(Durable, Deliveries), DurableError> {
        let name = stage.identity().stage;
        if !settings.partitions.enabled() {
            return Durable::open(bus, stage.counters(), name, &settings.nats, inputs).await;
        }
        let (stop, stopped) = watch::channel(false);
        let kinds: Vec<StreamKind> = inputs.iter().map(|(kind, _)| *kind).collect();
        let (leases, deliveries) =
            super::partition::open(bus, stage, settings, &kinds, stopped).await?;
        let mut durable = Durable::new(bus, stop, name);
        durable.leases = Some(leases);
        Ok((durable, deliveries))
    }

    fn new(bus: &Bus, stop: watch::Sender<bool>, stage: &'static str) -> Durable {
        Durable {
            client: bus.client().clone(),
            stop: Arc::new(stop),
            acks: Arc::new(Acks {
                outstanding: AtomicUsize::new(0),
                idle: Notify::new(),
                failures: Mutex::new(RateLimited::default()),
                stage,
            }),
            leases: None,
        }
    }

    /// Binds `stage`'s durable consumer on each stream of `inputs` (`(stream, filter)`),
    /// creating it when missing, and returns the handle and the deliveries.
    ///
    /// # Errors
    /// [`DurableError`] when a stream is missing or a consumer cannot be made or pulled.
    pub async fn open(
        bus: &Bus,
        counters: &StageCounters,
        stage: &'static str,
        settings: &NatsSettings,
        inputs: &[(StreamKind, String)],
    ) -> Result<(Durable, Deliveries), DurableError> {
        let (stop, stopped) = watch::channel(false);
        let lags: Arc<Vec<AtomicU64>> =
            Arc::new(inputs.iter().map(|_| AtomicU64::new(0)).collect());
        let mut streams = Vec::new();
        for (index, (kind, filter)) in inputs.iter().enumerate() {
            let messages = open_one(bus, stage, settings, *kind, filter).await?;
            let (consumer, messages, last) = messages;
            let tracker = Tracker {
                kind: *kind,
                index,
                lags: lags.clone(),
                counters: counters.clone(),
                skipped: counters.extra("skipped"),
                redelivered: counters.extra("redelivered"),
                errors: counters.extra("consumer_errors"),
                last,
                log: RateLimited::default(),
                stage,
                consumer,
                gaps: true,
            };
            streams.push(tracked(messages, tracker));
        }
        let mut stopped = stopped;
        let until = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let deliveries: Deliveries = Box::pin(
            futures::stream::select_all(streams)
                .map(Input::Delivery)
                .take_until(until),
        );
        Ok((Durable::new(bus, stop, stage), deliveries))
    }

    /// Acknowledges `delivery` now (it caused nothing to publish).
    pub fn ack(&self, delivery: Delivery) {
        self.ack_after(delivery, Vec::new());
    }

    /// Acknowledges `delivery` once every receipt says stored; hands it back to be
    /// delivered again (after a second) when one says not stored.
    pub fn ack_after(&self, delivery: Delivery, receipts: Vec<oneshot::Receiver<bool>>) {
        let acks = self.acks.clone();
        acks.outstanding.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut stored = true;
            for receipt in receipts {
                stored &= receipt.await.unwrap_or(false);
            }
            let kind = if stored {
                AckKind::Ack
            } else {
                AckKind::Nak(Some(NAK_DELAY))
            };
            if let Err(error) = delivery.message.ack_with(kind).await
                && let Some(held_back) = acks.failures.lock().expect("ack log lock").check()
            {
                tracing::warn!(stage = acks.stage, %error, held_back, "acknowledgement not sent (the input comes again after ack_wait)");
            }
            if acks.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
                acks.idle.notify_waiters();
            }
        });
    }

    /// Ends the deliveries: the actor takes nothing more.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`Durable::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once every acknowledgement asked for so far is sent and written out; a
    /// partitioned stage then releases its partitions.
    pub fn settled(&self) -> impl Future<Output = ()> + use<> {
        let acks = self.acks.clone();
        let client = self.client.clone();
        let leases = self.leases.clone();
        async move {
            loop {
                let idle = acks.idle.notified();
                if acks.outstanding.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
            let _ = client.flush().await;
            if let Some(leases) = leases {
                leases.release().await;
            }
        }
    }
}

type Pulled = (String, pull::Stream, Option<u64>);

/// Binds one consumer; returns its name, its messages and the last stream sequence it
/// handed out (`None` for a consumer that never handed anything out).
async fn open_one(
    bus: &Bus,
    stage: &'static str,
    settings: &NatsSettings,
    kind: StreamKind,
    filter: &str,
) -> Result<Pulled, DurableError> {
    let subjects: &Subjects = bus.subjects();
    let stream_name = subjects.stream_name(kind);
    let consumer_name = subjects.durable_consumer(stage, kind);
    let failed = |step: &'static str| {
        let (stream, consumer) = (stream_name.clone(), consumer_name.clone());
        move |source: async_nats::Error| DurableError {
            stream,
            consumer,
            step,
            source,
        }
    };
    let stream = bus
        .jetstream()
        .get_stream(&stream_name)
        .await
        .map_err(|error| failed("get stream")(error.into()))?;
    let config = pull::Config {
        durable_name: Some(consumer_name.clone()),
        description: Some(format!("fleetcast {stage}: its input from {stream_name}")),
        filter_subject: filter.to_string(),
        deliver_policy: jetstream::consumer::DeliverPolicy::New,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(settings.ack_wait_seconds),
        max_ack_pending: settings.max_ack_pending,
        ..Default::default()
    };
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&consumer_name, config.clone())
        .await
        .map_err(|error| failed("create consumer")(error.into()))?;
    let info = consumer.cached_info();
    let delivered = &info.delivered;
    let mut last = (delivered.consumer_sequence > 0).then_some(delivered.stream_sequence);
    if info.num_ack_pending > 0 {
        // A previous instance died holding inputs: rewind to the acknowledgement floor so
        // they come now, in order, instead of after `ack_wait` behind newer ones.
        let floor = info.ack_floor.stream_sequence;
        tracing::info!(
            stage,
            consumer = %consumer_name,
            unacknowledged = info.num_ack_pending,
            floor,
            "inputs left unacknowledged by an earlier instance: consumer rewound to its acknowledgement floor"
        );
        stream
            .delete_consumer(&consumer_name)
            .await
            .map_err(|error| failed("rewind consumer")(error.into()))?;
        consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                },
                ..config
            })
            .await
            .map_err(|error| failed("rewind consumer")(error.into()))?;
        last = Some(floor);
    }
    let messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|error| failed("pull")(error.into()))?;
    Ok((consumer_name, messages, last))
}

/// What one consumer's stream keeps to count lag, gaps and errors.
pub(super) struct Tracker {
    kind: StreamKind,
    index: usize,
    lags: Arc<Vec<AtomicU64>>,
    counters: StageCounters,
    skipped: Extra,
    redelivered: Extra,
    errors: Extra,
    /// Highest stream sequence handed out for the first time.
    last: Option<u64>,
    log: RateLimited,
    stage: &'static str,
    consumer: String,
    /// Whether a gap in the stream sequence is a loss (not for a partition's consumer,
    /// whose stream interleaves the other partitions).
    gaps: bool,
}

impl Tracker {
    /// The tracker of one partition's consumer: its pending count is `lags[partition]`.
    pub(super) fn partition(
        partition: u32,
        lags: Arc<Vec<AtomicU64>>,
        counters: &StageCounters,
        stage: &'static str,
        consumer: String,
    ) -> Tracker {
        Tracker {
            kind: StreamKind::Metrics,
            index: partition as usize,
            lags,
            counters: counters.clone(),
            skipped: counters.extra("skipped"),
            redelivered: counters.extra("redelivered"),
            errors: counters.extra("consumer_errors"),
            last: None,
            log: RateLimited::default(),
            stage,
            consumer,
            gaps: false,
        }
    }

    pub(super) fn take(
        &mut self,
        result: Result<jetstream::Message, pull::MessagesError>,
    ) -> Option<Delivery> {
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                self.errors.incr();
                if let Some(held_back) = self.log.check() {
                    tracing::warn!(stage = self.stage, consumer = %self.consumer, %error, held_back, "consumer error: it goes on by itself");
                }
                return None;
            }
        };
        let (sequence, delivered, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered, info.pending),
            Err(_) => (0, 1, 0),
        };
        self.lags[self.index].store(pending, Ordering::SeqCst);
        self.counters
            .set_lag(self.lags.iter().map(|lag| lag.load(Ordering::SeqCst)).sum());
        let redelivered = delivered > 1;
        if redelivered {
            self.redelivered.incr();
        } else if self.gaps && sequence > 0 {
            if let Some(last) = self.last
                && sequence > last + 1
            {
                let gap = sequence - last - 1;
                self.skipped.add(gap);
                tracing::warn!(stage = self.stage, consumer = %self.consumer, gap, "a gap in the stream's sequence: inputs it dropped before they were handed out (raise its per-server history), or sequences a clustered stream skipped in a failover");
            }
            self.last = Some(self.last.map_or(sequence, |last| last.max(sequence)));
        }
        Some(Delivery {
            message,
            kind: self.kind,
            redelivered,
            partition: None,
        })
    }
}

fn tracked(
    messages: pull::Stream,
    mut tracker: Tracker,
) -> Pin<Box<dyn Stream<Item = Delivery> + Send>> {
    Box::pin(messages.filter_map(move |result| futures::future::ready(tracker.take(result))))
}
