//! The stage toolkit: what every actor of the pipeline shares, written once.
//!
//! | piece | what it gives |
//! |---|---|
//! | [`StageCounters`] ([`counters`]) | the same counters everywhere: received, accepted, rejected by kind, published, publish errors, outbox full, consumer lag, plus the actor's own extras; awaitable in tests |
//! | [`Reject`] ([`reject`]) | the one rejection type: server, kind, reason |
//! | [`Outbox`] ([`outbox`]) | the one publish path: bounded, in order, back-pressure, stream acknowledgements, flush |
//! | [`AsyncStage`] | the same counters, outbox and rejection path for a stage's async tasks (a scrape loop, HTTP handlers), and publishes confirmed before a reply ([`AsyncStage::publish_confirmed`]) |
//! | [`RateLimited`] | one log line per interval for repeated trouble |
//! | [`StageService`] ([`service`]) | the instance as a NATS micro service (`$SRV.PING/INFO/STATS`) reporting its counters and [`Facts`] |
//! | [`Intake`] ([`intake`]) | input subscriptions with a measured lag and a drain that loses nothing |
//! | [`Durable`] ([`durable`]) | input through JetStream durable consumers: nothing lost while the stage is slow or stopped, acknowledged once its outputs are stored |
//! | [`partition`] | scale-out: N instances split a stage's input by a stable partition of the server name, one owner per partition (leases), takeover with the state rebuilt from the streams |
//! | [`replay`](replay::replay) | a JetStream stream read back at start-up |
//! | [`Drain`], [`Stop`], [`StageHandle`] | the shutdown protocol and what `spawn` returns |
//!
//! # How an actor adopts it
//!
//! In its `spawn` (config → build → run), one call builds the counters, the outbox task and
//! the micro service; the actor keeps the [`Stage`], implements [`Staged`], and `spawn`
//! returns the [`StageHandle`] of [`start`]:
//!
//! ```ignore
//! let mut stage = Stage::build(&bus, StageSpec::new(STAGE, "what it does").extras(&["steps"])).await?;
//! // in a handler:
//! self.stage.counters().received();
//! self.stage.publish_to_stream(ctx, subjects.risk(server), &score);
//! self.stage.reject(ctx, subject, Reject::new(RejectKind::OutOfRange, "...").with_server(server));
//! // at the end of spawn (the actor implements `Staged`):
//! Ok(stage::start(actor))
//! ```
//!
//! and implements [`Drain`] with [`drain`]: stop taking input (an [`Intake`] drains itself; a
//! JetStream consumer stops pulling), finish and acknowledge what is in flight, then
//! [`Stage::drained`] (the outbox flushed, the service gone) and stop. The pipeline drains
//! the stages in pipeline order on SIGINT or SIGTERM.

pub mod counters;
pub mod durable;
pub mod intake;
pub mod outbox;
pub mod partition;
pub mod reject;
pub mod replay;
pub mod service;

pub use crate::ratelog::RateLimited;
pub use counters::{Counters, Extra, StageCounters};
pub use durable::{DURABLE_EXTRAS, Deliveries, Delivery, Durable, DurableError, Input};
pub use intake::{Intake, IntakeError, Tracked};
pub use outbox::{Envelope, OUTBOX_CAPACITY, Outbox};
pub use partition::{PARTITION_EXTRAS, PartitionMap};
pub use reject::Reject;
pub use replay::{ReplayError, replay};
pub use service::{Facts, Identity, ServiceError, StageService, default_instance};

use crate::bus::Bus;
use crate::wire::{self, Rejection, SCHEMA_VERSION, WireMessage};
use actix::prelude::*;
use async_nats::service::endpoint::Endpoint;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Asks a stage to stop at once (its subscriptions end with it; nothing is drained).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Asks a stage to drain: stop taking input, finish and acknowledge what is in flight,
/// flush its outbox, stop its service, then stop. Answered once all that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// What a stage is and how it runs: its name, what it says about itself, its own counters
/// and endpoints. See [`Stage::build`].
#[derive(Debug, Clone)]
pub struct StageSpec {
    stage: &'static str,
    description: String,
    instance: Option<String>,
    extras: Vec<&'static str>,
    endpoints: Vec<(String, String)>,
    metadata: BTreeMap<String, String>,
    outbox_capacity: usize,
}

impl StageSpec {
    /// Stage `stage` (snake case, as in `rejected.<stage>`), described in a sentence.
    pub fn new(stage: &'static str, description: impl Into<String>) -> StageSpec {
        StageSpec {
            stage,
            description: description.into(),
            instance: None,
            extras: Vec::new(),
            endpoints: Vec::new(),
            metadata: BTreeMap::new(),
            outbox_capacity: OUTBOX_CAPACITY,
        }
    }

    /// The instance name (default `<host>-<pid>`).
    #[must_use]
    pub fn instance(mut self, instance: impl Into<String>) -> StageSpec {
        self.instance = Some(instance.into());
        self
    }

    /// The actor's own counters.
    #[must_use]
    pub fn extras(mut self, names: &[&'static str]) -> StageSpec {
        self.extras.extend_from_slice(names);
        self
    }

    /// A request endpoint `name` on `subject`, served by the actor
    /// ([`Stage::take_endpoint`]).
    #[must_use]
    pub fn endpoint(mut self, name: &str, subject: String) -> StageSpec {
        self.endpoints.push((name.to_string(), subject));
        self
    }

    /// Service metadata `key` = `value` (`$SRV.INFO`), fixed for the instance's life.
    #[must_use]
    pub fn metadata(mut self, key: &str, value: impl ToString) -> StageSpec {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// Messages the outbox holds before the actor waits (default [`OUTBOX_CAPACITY`]).
    #[must_use]
    pub fn outbox_capacity(mut self, capacity: usize) -> StageSpec {
        self.outbox_capacity = capacity;
        self
    }
}

/// One stage instance's shared machinery: counters, facts, outbox, rejections and its
/// micro service. Built in `spawn`, kept by the actor.
pub struct Stage {
    identity: Identity,
    counters: StageCounters,
    facts: Facts,
    outbox: Outbox,
    rejected_subject: String,
    /// Shared with the stage's [`AsyncStage`] handles, so a burst of rejections logs one
    /// line whichever side refused them.
    reject_log: Arc<Mutex<RateLimited>>,
    service: StageService,
    endpoints: Vec<(String, Endpoint)>,
}

/// The parts of a [`Stage`] that async tasks use outside the actor's handlers (a scrape
/// loop, HTTP request handlers): the same counters, outbox and rejection path, with
/// back-pressure by awaiting instead of making the actor wait. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AsyncStage {
    stage: &'static str,
    counters: StageCounters,
    outbox: Outbox,
    rejected_subject: String,
    reject_log: Arc<Mutex<RateLimited>>,
}

impl AsyncStage {
    /// Its counters.
    pub fn counters(&self) -> &StageCounters {
        &self.counters
    }

    /// Its outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Queues `message` on `subject` as a core message, waiting while the outbox is full.
    pub async fn publish<T: WireMessage>(&self, subject: String, message: &T) {
        self.outbox.send(Envelope::core(subject, message)).await;
    }

    /// Queues `message` on `subject`, which a stream captures (acknowledged), waiting while
    /// the outbox is full.
    pub async fn publish_to_stream<T: WireMessage>(&self, subject: String, message: &T) {
        self.outbox.send(Envelope::stream(subject, message)).await;
    }

    /// Queues `envelopes` and waits until each is known stored or not, at most `within` in
    /// all (queueing included: it waits while the outbox is full). Per envelope, in order:
    /// `Some(true)` stored (a core message: sent), `Some(false)` not, `None` no answer in
    /// time (it may still go out). What a stage answering a request needs before it replies.
    pub async fn publish_confirmed(
        &self,
        envelopes: Vec<Envelope>,
        within: Duration,
    ) -> Vec<Option<bool>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut receipts = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let (envelope, receipt) = envelope.with_receipt();
            let queued = tokio::time::timeout_at(deadline, self.outbox.send(envelope)).await;
            receipts.push(queued.ok().map(|()| receipt));
        }
        let mut outcomes = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            outcomes.push(match receipt {
                None => None,
                Some(receipt) => tokio::time::timeout_at(deadline, receipt)
                    .await
                    .ok()
                    .map(|answer| answer.unwrap_or(false)),
            });
        }
        outcomes
    }

    /// Refuses the input that arrived on `subject`: counts it by kind, logs it (warn at most
    /// once per 10 s, debug otherwise) and publishes it on `rejected.<stage>`.
    pub async fn reject(&self, subject: &str, reject: Reject) {
        let envelope = rejection_envelope(
            self.stage,
            &self.counters,
            &self.reject_log,
            &self.rejected_subject,
            subject,
            reject,
        );
        self.outbox.send(envelope).await;
    }
}

/// Counts and logs `reject` (see [`Stage::count_rejection`]).
fn count_rejection(
    stage: &'static str,
    counters: &StageCounters,
    reject_log: &Mutex<RateLimited>,
    subject: &str,
    reject: &Reject,
) {
    counters.rejected(reject.kind);
    let kind = reject.kind.name();
    let reason = reject.reason.as_str();
    let due = reject_log.lock().expect("reject log lock").check();
    match due {
        Some(held_back) => tracing::warn!(
            stage,
            subject,
            kind,
            reason,
            held_back,
            "input rejected (further ones for 10 s at debug)"
        ),
        None => tracing::debug!(stage, subject, kind, reason, "input rejected"),
    }
}

/// Counts and logs `reject`, and makes its dead letter.
fn rejection_envelope(
    stage: &'static str,
    counters: &StageCounters,
    reject_log: &Mutex<RateLimited>,
    rejected_subject: &str,
    subject: &str,
    reject: Reject,
) -> Envelope {
    count_rejection(stage, counters, reject_log, subject, &reject);
    let Reject {
        server,
        kind,
        reason,
    } = reject;
    let rejection = Rejection {
        v: SCHEMA_VERSION,
        stage: stage.to_string(),
        subject: subject.to_string(),
        server,
        kind,
        reason,
        at_ms: wire::now_ms(),
    };
    Envelope::core(rejected_subject.to_string(), &rejection)
}

impl Stage {
    /// Builds the counters, starts the outbox task and the micro service with its endpoints.
    /// Everything that can fail fails here, before the actor starts.
    ///
    /// # Errors
    /// [`ServiceError`] when the service or an endpoint cannot subscribe.
    pub async fn build(bus: &Bus, spec: StageSpec) -> Result<Stage, ServiceError> {
        let identity = Identity {
            stage: spec.stage,
            instance: spec.instance.unwrap_or_else(default_instance),
            prefix: bus.subjects().prefix().to_string(),
        };
        let counters = StageCounters::new(&spec.extras);
        let facts = Facts::default();
        let (service, endpoints) = StageService::start(
            bus,
            &identity,
            &spec.description,
            &spec.metadata,
            counters.clone(),
            facts.clone(),
            &spec.endpoints,
        )
        .await?;
        let outbox = Outbox::start(
            bus.client().clone(),
            counters.clone(),
            spec.stage,
            spec.outbox_capacity,
        );
        Ok(Stage {
            rejected_subject: bus.subjects().rejected(spec.stage),
            identity,
            counters,
            facts,
            outbox,
            reject_log: Arc::default(),
            service,
            endpoints: spec
                .endpoints
                .into_iter()
                .map(|(name, _)| name)
                .zip(endpoints)
                .collect(),
        })
    }

    /// Who this instance is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Its counters.
    pub fn counters(&self) -> &StageCounters {
        &self.counters
    }

    /// What it says about itself in its reports.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Its outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The request stream of endpoint `name`, for the actor to serve (once).
    pub fn take_endpoint(&mut self, name: &str) -> Option<Endpoint> {
        let index = self.endpoints.iter().position(|(held, _)| held == name)?;
        Some(self.endpoints.swap_remove(index).1)
    }

    /// Queues `message` on `subject` as a core message.
    pub fn publish<A, T>(&self, ctx: &mut Context<A>, subject: String, message: &T)
    where
        A: Actor<Context = Context<A>>,
        T: WireMessage,
    {
        self.outbox.push(ctx, Envelope::core(subject, message));
    }

    /// Queues `message` on `subject`, which a stream captures (acknowledged).
    pub fn publish_to_stream<A, T>(&self, ctx: &mut Context<A>, subject: String, message: &T)
    where
        A: Actor<Context = Context<A>>,
        T: WireMessage,
    {
        self.outbox.push(ctx, Envelope::stream(subject, message));
    }

    /// Queues `message` on `subject`, which a stream captures, with the `Nats-Msg-Id`
    /// `msg_id`: the stream drops a copy sent again (same id) inside its duplicate window.
    pub fn publish_to_stream_with_id<A, T>(
        &self,
        ctx: &mut Context<A>,
        subject: String,
        message: &T,
        msg_id: String,
    ) where
        A: Actor<Context = Context<A>>,
        T: WireMessage,
    {
        self.outbox
            .push(ctx, Envelope::stream(subject, message).with_msg_id(msg_id));
    }

    /// Queues `message` on `subject`, which a stream captures, with the `Nats-Msg-Id`
    /// `msg_id`: the stream drops a republished copy (same id) inside its duplicate window.
    /// The receiver says whether it was stored (for [`Durable::ack_after`]).
    pub fn publish_to_stream_once<A, T>(
        &self,
        ctx: &mut Context<A>,
        subject: String,
        message: &T,
        msg_id: String,
    ) -> tokio::sync::oneshot::Receiver<bool>
    where
        A: Actor<Context = Context<A>>,
        T: WireMessage,
    {
        let (envelope, stored) = Envelope::stream(subject, message)
            .with_msg_id(msg_id)
            .with_receipt();
        self.outbox.push(ctx, envelope);
        stored
    }

    /// Refuses the input that arrived on `subject`: counts it by kind, logs it (warn at most
    /// once per 10 s, debug otherwise) and publishes it on `rejected.<stage>`.
    pub fn reject<A>(&mut self, ctx: &mut Context<A>, subject: &str, reject: Reject)
    where
        A: Actor<Context = Context<A>>,
    {
        let envelope = rejection_envelope(
            self.identity.stage,
            &self.counters,
            &self.reject_log,
            &self.rejected_subject,
            subject,
            reject,
        );
        self.outbox.push(ctx, envelope);
    }

    /// Counts and logs a refusal without publishing it (input replayed at start-up, which
    /// was dead-lettered the first time).
    pub fn count_rejection(&mut self, subject: &str, reject: &Reject) {
        count_rejection(
            self.identity.stage,
            &self.counters,
            &self.reject_log,
            subject,
            reject,
        );
    }

    /// The handle its async tasks publish and reject through.
    pub fn async_side(&self) -> AsyncStage {
        AsyncStage {
            stage: self.identity.stage,
            counters: self.counters.clone(),
            outbox: self.outbox.clone(),
            rejected_subject: self.rejected_subject.clone(),
            reject_log: self.reject_log.clone(),
        }
    }

    /// The end of a drain: stops the micro service now (it no longer answers `$SRV`) and
    /// returns a future that resolves once the outbox has published everything queued.
    pub fn drained(&self) -> impl Future<Output = ()> + use<> {
        self.service.stop();
        let outbox = self.outbox.clone();
        let stage = self.identity.stage;
        async move {
            outbox.flush().await;
            tracing::info!(stage, "drained");
        }
    }
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("identity", &self.identity)
            .field("counters", &self.counters.snapshot())
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// An actor built on a [`Stage`].
pub trait Staged: Actor<Context = Context<Self>> {
    /// Its stage.
    fn stage(&self) -> &Stage;
}

/// What a [`Drain`] handler returns: awaits `first` (stop the input: [`Intake::drain`], a
/// clock told to stop), runs `last` on the actor (a final summary; nothing in between is
/// lost), then [`Stage::drained`] (the service stops, the outbox flushes), then stops the
/// actor.
pub fn drain<A: Staged>(
    first: impl Future<Output = ()> + 'static,
    last: impl FnOnce(&mut A, &mut Context<A>) + 'static,
) -> ResponseActFuture<A, ()> {
    Box::pin(
        actix::fut::wrap_future::<_, A>(first)
            .then(move |(), actor, ctx| {
                last(actor, ctx);
                actix::fut::wrap_future(actor.stage().drained())
            })
            .map(|(), _, ctx| ctx.stop()),
    )
}

/// What the [`Drain`] handler of a stage reading through a [`Durable`] returns: ends the
/// deliveries, runs `last` on the actor (a final summary), then [`Stage::drained`] (the
/// outbox flushes, so every receipt is in), then waits until every acknowledgement is sent,
/// then stops the actor. What the client had fetched beyond is redelivered after `ack_wait`.
pub fn drain_durable<A: Staged>(
    durable: &Durable,
    last: impl FnOnce(&mut A, &mut Context<A>) + 'static,
) -> ResponseActFuture<A, ()> {
    durable.stop();
    let settled = durable.settled();
    Box::pin(
        actix::fut::ready(())
            .then(move |(), actor: &mut A, ctx| {
                last(actor, ctx);
                actix::fut::wrap_future(actor.stage().drained())
            })
            .then(move |(), _, _| actix::fut::wrap_future(settled))
            .map(|(), _, ctx| ctx.stop()),
    )
}

/// Starts `actor` and returns its [`StageHandle`]: what `spawn` returns.
pub fn start<A: Staged>(actor: A) -> StageHandle<A> {
    let stage = actor.stage();
    let (identity, counters, facts) = (
        stage.identity.clone(),
        stage.counters.clone(),
        stage.facts.clone(),
    );
    StageHandle {
        addr: actor.start(),
        identity,
        counters,
        facts,
    }
}

/// A running stage instance as `spawn` returns it: the actor's address (it derefs to it),
/// who it is, and its live counters and facts (readable without asking the actor).
pub struct StageHandle<A: Actor> {
    /// The actor.
    pub addr: Addr<A>,
    /// Who it is.
    pub identity: Identity,
    /// Its counters.
    pub counters: StageCounters,
    /// Its facts.
    pub facts: Facts,
}

impl<A: Actor> Clone for StageHandle<A> {
    fn clone(&self) -> Self {
        StageHandle {
            addr: self.addr.clone(),
            identity: self.identity.clone(),
            counters: self.counters.clone(),
            facts: self.facts.clone(),
        }
    }
}

impl<A: Actor> std::fmt::Debug for StageHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageHandle")
            .field("identity", &self.identity)
            .field("connected", &self.addr.connected())
            .finish_non_exhaustive()
    }
}

impl<A: Actor> std::ops::Deref for StageHandle<A> {
    type Target = Addr<A>;

    fn deref(&self) -> &Addr<A> {
        &self.addr
    }
}

impl<A> StageHandle<A>
where
    A: Actor<Context = Context<A>> + Handler<Drain>,
{
    /// The handle without its actor type, for the pipeline's list of stages.
    pub fn running(&self) -> RunningStage {
        RunningStage {
            identity: self.identity.clone(),
            counters: self.counters.clone(),
            drain: Some(self.addr.clone().recipient()),
        }
    }
}

/// A running stage instance of any actor type: who it is, its counters, and how to drain
/// it (`None` for an actor that has not adopted [`Drain`] yet: it stops with the process).
#[derive(Debug, Clone)]
pub struct RunningStage {
    /// Who it is.
    pub identity: Identity,
    /// Its counters.
    pub counters: StageCounters,
    /// Where to send [`Drain`].
    pub drain: Option<Recipient<Drain>>,
}
