//! The alert router: turns risk scores and forecasts into alert events that raise, escalate,
//! de-escalate and resolve, without flapping.
//!
//! - **Consumes** `risk.>` ([`RiskScore`]) and `forecasts.>` ([`Forecast`]) through
//!   JetStream durable consumers ([`Durable`]): `alert_router-risk` on RISK (which keeps
//!   `nats.risk_history` scores per server) and `alert_router-forecasts` on FORECASTS.
//!   Nothing published while the router is slow, busy or stopped is lost. An input is
//!   acknowledged once every event it caused is stored in the ALERTS stream.
//! - **No doubled event**: every event is published with `Nats-Msg-Id:
//!   <id>-<action>-<severity>-<at_ms>` (the alert's id, the transition, and the input's own
//!   time), so an event routed again from a redelivered input is dropped by the ALERTS stream
//!   inside its duplicate window (2 minutes).
//! - **Publishes** `alerts.<severity>.<server>` ([`AlertEvent`]), captured by the ALERTS
//!   JetStream stream as history; refused inputs on `rejected.alert_router` ([`Rejection`](crate::wire::Rejection)).
//!   The subject's severity is the higher of the event's new and previous severity
//!   ([`book::publish_severity`]): a raise or escalation goes out under its new severity, a
//!   de-escalation or resolve under the severity it leaves, so `alerts.critical.>` sees
//!   every event entering or leaving critical. The payload's `severity` is always the new
//!   one (`healthy` on resolve).
//! - **State**: per server one risk ladder and one ladder per predictive metric
//!   ([`book::AlertBook`], [`ladder::Ladder`]): the level, since when, and the alert's
//!   opening time (its id is `<server>-<subject>-<opened_ms>`). Times are the messages'
//!   own (`sample_ms` of a score, `origin_s` of a forecast), so the simulated clock drives
//!   hysteresis and dwell and tests are deterministic.
//! - **Fails** only at start (its service, subscribing, reading the history back). Bad
//!   input (undecodable, another schema version, a server that does not match its subject,
//!   a NaN or out-of-range score, a forecast with NaN or wrong-length series, a score older
//!   than the server's latest) is refused with its reason on the dead-letter subject,
//!   counted, and the actor goes on (checks in [`crate::checks`]). A forecast older than the
//!   server's latest is *stale* (predictor workers finish out of order): counted as
//!   `stale_forecasts` and dropped, no rejection, no warning.
//! - **Restart**: before it starts, the router reads the ALERTS stream back (oldest first)
//!   and puts every open alert back at its level with its id and opening time, so a
//!   restarted router de-escalates and resolves the alerts it had raised instead of raising
//!   them again; the raise and dwell waits start afresh.
//! - **Partitioned** (`partitions.count` > 1, [`stage::partition`]): the router reads only
//!   the partitions it owns, from `FLEETCAST_IN_ALERT_ROUTER`, and does not read the alert
//!   history back; a claimed partition's ladders are rebuilt from its inputs up to its
//!   consumer's acknowledgement floor (their events dropped: published by the earlier
//!   owner, counted `replayed`), so the events that follow are those one router would
//!   route; a lost partition's ladders are forgotten.
//! - **Observability and shutdown** come from the [stage toolkit](crate::actors::stage):
//!   the consumers' pending counts as `consumer_lag`, the
//!   counters (extras `replayed`, `events`, `stale_forecasts`, `superseded`: risk scores
//!   older than the ladder that were routed before (redelivered, or older than the
//!   history read back), acknowledged without a rejection; and the consumers' `redelivered`,
//!   `skipped`, `consumer_errors`), the micro service `fleetcast-alert-router`
//!   (fact `open_alerts`), a bounded outbox (events leave in order), and [`Drain`]: stop the
//!   deliveries, flush, send the last acknowledgements, stop.

pub mod book;
pub mod ladder;

use self::book::{AlertBook, BookConfig, publish_severity};
use crate::actors::stage::{
    self, Deliveries, Delivery, Drain, Durable, DurableError, Extra, Input, PartitionMap, Reject,
    ReplayError, ServiceError, Stage, StageHandle, StageSpec, Staged, Stop, replay,
};
use crate::bus::Bus;
use crate::checks::{check_forecast, check_risk};
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subjects};
use crate::wire::{self, AlertEvent, Forecast, RejectKind, RiskScore};
use actix::prelude::*;
use async_nats::jetstream::consumer::DeliverPolicy;

/// The stage name, in rejections and logs.
pub const STAGE: &str = "alert_router";

/// How often the `open_alerts` fact is brought up to date.
const FACTS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the alert router could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertRouterError {
    /// Its micro service could not start.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Its input could not be opened.
    #[error(transparent)]
    Durable(#[from] DurableError),
    /// The alert history could not be read back.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// The alert router actor; start it with [`spawn`].
pub struct AlertRouter {
    subjects: Subjects,
    book: AlertBook,
    stage: Stage,
    events: Extra,
    /// Forecasts older than the one held: superseded, counted, dropped.
    stale_forecasts: Extra,
    /// Risk scores routed before (redelivered, or older than the history read back).
    superseded: Extra,
    durable: Durable,
    inputs: Option<Deliveries>,
    /// The partition of each server held (partitioned input only).
    partitions: PartitionMap,
    /// Inputs taken in silently to rebuild a claimed partition (and history read back).
    replayed: Extra,
}

impl Staged for AlertRouter {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Actor for AlertRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(inputs) = self.inputs.take() {
            ctx.add_stream(inputs);
        }
        // Counting open alerts visits every server: once a second, not per event.
        ctx.run_interval(FACTS_INTERVAL, |router, _| {
            router
                .stage
                .facts()
                .set("open_alerts", router.book.open_alerts());
        });
    }
}

/// Builds the stage, binds its durable consumers on risk scores and forecasts, reads the
/// alert history back, then starts the alert router.
///
/// # Errors
/// [`AlertRouterError`] when the service, a consumer or the replay fails.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<AlertRouter>, AlertRouterError> {
    let subjects = bus.subjects().clone();
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast alert router: raises, escalates and resolves alerts from risk scores and forecasts",
        )
        .extras(&["replayed", "events", "stale_forecasts", "superseded"])
        .extras(&stage::partition::extras(settings)),
    )
    .await?;
    let (durable, inputs) = Durable::open_stage(
        &bus,
        &stage,
        settings,
        &[
            (StreamKind::Risk, subjects.risk_all()),
            (StreamKind::Forecasts, subjects.forecasts_all()),
        ],
    )
    .await?;
    let mut book = AlertBook::new(BookConfig::from_settings(&settings.alerts));
    // Partitioned, each claimed partition's ladders are rebuilt from its own inputs instead.
    let history = if settings.partitions.enabled() {
        Vec::new()
    } else {
        replay(
            &bus,
            StreamKind::Alerts,
            subjects.alerts_all(),
            DeliverPolicy::All,
        )
        .await?
    };
    for message in &history {
        match wire::decode::<AlertEvent>(&message.payload) {
            Ok(event) => book.restore(&event),
            Err(error) => {
                tracing::debug!(stage = STAGE, subject = %message.subject, %error, "alert history entry skipped")
            }
        }
    }
    stage.counters().extra("replayed").add(history.len() as u64);
    stage.facts().set("open_alerts", book.open_alerts());
    tracing::info!(
        stage = STAGE,
        events = history.len(),
        open = book.open_alerts(),
        "alert history read back; alert router started"
    );
    let router = AlertRouter {
        subjects,
        book,
        events: stage.counters().extra("events"),
        stale_forecasts: stage.counters().extra("stale_forecasts"),
        superseded: stage.counters().extra("superseded"),
        replayed: stage.counters().extra("replayed"),
        partitions: PartitionMap::default(),
        stage,
        durable,
        inputs: Some(inputs),
    };
    Ok(stage::start(router))
}

fn out_of_order(server: &str, error: impl std::fmt::Display) -> Reject {
    Reject::new(RejectKind::OutOfOrder, error.to_string()).with_server(server)
}

/// The `Nats-Msg-Id` of an event (see the module doc).
fn event_msg_id(event: &AlertEvent) -> String {
    format!(
        "{}-{:?}-{}-{}",
        event.id, event.action, event.severity, event.at_ms
    )
}

impl AlertRouter {
    /// A score older than the server's ladder was routed before when it is `redelivered`
    /// or the ladder was read back from the history and has not moved since: `superseded`,
    /// no rejection. Otherwise it is out of order, refused.
    fn on_risk(
        &mut self,
        subject: &str,
        payload: &[u8],
        redelivered: bool,
    ) -> Result<Vec<AlertEvent>, Reject> {
        let risk: RiskScore = wire::decode(payload)?;
        check_risk(&self.subjects, subject, &risk)?;
        match self.book.on_risk(&risk) {
            Ok(event) => Ok(event.into_iter().collect()),
            Err(error) if redelivered || error.restored => {
                self.superseded.incr();
                Ok(Vec::new())
            }
            Err(error) => Err(out_of_order(&risk.server, error)),
        }
    }

    /// A forecast older than the one the book holds for its server is *stale*, not bad
    /// input: two predictor workers finish out of order (during a backfill, all the time),
    /// and the newer forecast already moved the alerts. It is counted (`stale_forecasts`)
    /// and dropped, not dead-lettered (issue 11).
    fn on_forecast(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<AlertEvent>, Reject> {
        let forecast: Forecast = wire::decode(payload)?;
        check_forecast(&self.subjects, subject, &forecast)?;
        match self.book.on_forecast(&forecast) {
            Ok(events) => Ok(events),
            Err(error) => {
                self.stale_forecasts.incr();
                tracing::debug!(stage = STAGE, server = %forecast.server, %error, "stale forecast dropped");
                Ok(Vec::new())
            }
        }
    }
}

impl AlertRouter {
    /// Forgets the ladders of `partition`'s servers (claimed anew or lost).
    fn forget(&mut self, partition: u32) {
        for server in self.partitions.take(partition) {
            self.book.forget(&server);
        }
    }

    /// A claimed partition: its servers' ladders rebuilt from `history`, the events it
    /// gives dropped (they were published by the partition's earlier owner).
    fn rebuild(&mut self, partition: u32, history: &[async_nats::Message]) {
        self.forget(partition);
        for message in history {
            let subject = message.subject.as_str();
            if self.subjects.is_forecast(subject) {
                if let Ok(forecast) = wire::decode::<Forecast>(&message.payload) {
                    let _ = self.book.on_forecast(&forecast);
                    self.partitions.note(&forecast.server, Some(partition));
                }
            } else if let Ok(risk) = wire::decode::<RiskScore>(&message.payload) {
                let _ = self.book.on_risk(&risk);
                self.partitions.note(&risk.server, Some(partition));
            }
            self.replayed.incr();
        }
    }
}

impl StreamHandler<Input> for AlertRouter {
    fn handle(&mut self, input: Input, ctx: &mut Context<Self>) {
        match input {
            Input::Delivery(delivery) => self.on_delivery(delivery, ctx),
            Input::Claimed { partition, history } => self.rebuild(partition, &history),
            Input::Lost { partition } => self.forget(partition),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.durable.is_stopping() {
            tracing::error!(
                stage = STAGE,
                "the consumers ended (connection closed): the alert router stops"
            );
            ctx.stop();
        }
    }
}

impl AlertRouter {
    fn on_delivery(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.stage.counters().received();
        let message = &delivery.message;
        let subject = message.subject.as_str();
        let outcome = match delivery.kind {
            StreamKind::Forecasts => self.on_forecast(subject, &message.payload),
            _ => self.on_risk(subject, &message.payload, delivery.redelivered),
        };
        let events = match outcome {
            Ok(events) => events,
            Err(reject) => {
                let reject = reject.or_server(self.subjects.server_of(subject));
                self.stage.reject(ctx, subject, reject);
                self.durable.ack(delivery);
                return;
            }
        };
        self.stage.counters().accepted();
        if let Some(server) = self.subjects.server_of(subject) {
            self.partitions.note(server, delivery.partition);
        }
        let mut receipts = Vec::with_capacity(events.len());
        for event in events {
            tracing::info!(
                stage = STAGE,
                id = %event.id,
                action = ?event.action,
                severity = %event.severity,
                reason = %event.reason,
                "alert"
            );
            let subject = self
                .subjects
                .alerts(publish_severity(&event), &event.server);
            let id = event_msg_id(&event);
            receipts.push(self.stage.publish_to_stream_once(ctx, subject, &event, id));
            self.events.incr();
        }
        self.durable.ack_after(delivery, receipts);
    }
}

impl Handler<Drain> for AlertRouter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        stage::drain_durable(&self.durable, |_: &mut AlertRouter, _| {})
    }
}

impl Handler<Stop> for AlertRouter {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Asks how many alerts are open now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct GetOpenAlerts;

impl Handler<GetOpenAlerts> for AlertRouter {
    type Result = usize;

    fn handle(&mut self, _: GetOpenAlerts, _: &mut Context<Self>) -> usize {
        self.book.open_alerts()
    }
}
