//! The alert router: turns risk scores and forecasts into alert events that raise, escalate,
//! de-escalate and resolve, without flapping.
//!
//! - **Consumes** `risk.>` ([`RiskScore`]) and `forecasts.>` ([`Forecast`]).
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
//! - **Fails** only at start (subscribing, reading the history back). Bad input (undecodable, another schema version,
//!   a server that does not match its subject, a NaN or out-of-range score, a forecast with
//!   NaN or wrong-length series, a score or forecast older than the server's latest) is
//!   refused with its reason on the dead-letter subject, counted, and the actor goes on.
//! - **Restart**: before it starts, the router reads the ALERTS stream back (oldest first)
//!   and puts every open alert back at its level with its id and opening time, so a
//!   restarted router de-escalates and resolves the alerts it had raised instead of raising
//!   them again; the raise and dwell waits start afresh.

pub mod book;
pub mod ladder;

use self::book::{AlertBook, BookConfig, publish_severity};
use crate::actors::risk_scorer::inputs::{Invalid, check_forecast, check_risk, server_of_subject};
use crate::actors::stage::{GetCounters, Outbox, Rejects, StageCounters, Stop, replay};
use crate::bus::Bus;
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::subjects::Subjects;
use crate::wire::{self, AlertEvent, Forecast, RejectKind, RiskScore};
use actix::prelude::*;
use async_nats::jetstream::consumer::DeliverPolicy;

/// The stage name, in rejections and logs.
pub const STAGE: &str = "alert_router";

/// Why the alert router could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertRouterError {
    /// The alert history could not be read back.
    #[error(transparent)]
    Replay(#[from] crate::actors::stage::ReplayError),
    /// A subscription failed.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The subscriptions could not be confirmed with the server.
    #[error("cannot flush the subscriptions: {0}")]
    Flush(#[source] async_nats::client::FlushError),
}

/// The alert router actor; start it with [`spawn`].
pub struct AlertRouter {
    subjects: Subjects,
    book: AlertBook,
    counters: StageCounters,
    outbox: Outbox,
    rejects: Rejects,
    subscriptions: Option<(async_nats::Subscriber, async_nats::Subscriber)>,
}

impl Actor for AlertRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((risk, forecasts)) = self.subscriptions.take() {
            ctx.add_stream(risk);
            ctx.add_stream(forecasts);
        }
    }
}

/// Subscribes to risk scores and forecasts, then starts the alert router.
///
/// # Errors
/// [`AlertRouterError`] when a subscription fails.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<AlertRouter>, AlertRouterError> {
    let subjects = bus.subjects().clone();
    let subscribe = |subject: String| {
        let client = bus.client().clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| AlertRouterError::Subscribe { subject, source })
        }
    };
    let risk = subscribe(subjects.risk_all()).await?;
    let forecasts = subscribe(subjects.forecasts_all()).await?;
    bus.client()
        .flush()
        .await
        .map_err(AlertRouterError::Flush)?;
    let counters = StageCounters::default();
    let outbox = Outbox::start(bus.client().clone(), counters.clone(), STAGE);
    let mut book = AlertBook::new(BookConfig::from_settings(&settings.alerts));
    let history = replay(
        &bus,
        StreamKind::Alerts,
        bus.subjects().alerts_all(),
        DeliverPolicy::All,
    )
    .await?;
    for message in &history {
        match wire::decode::<AlertEvent>(&message.payload) {
            Ok(event) => book.restore(&event),
            Err(error) => {
                tracing::debug!(stage = STAGE, subject = %message.subject, %error, "alert history entry skipped")
            }
        }
    }
    tracing::info!(
        stage = STAGE,
        events = history.len(),
        open = book.open_alerts(),
        "alert history read back"
    );
    let router = AlertRouter {
        subjects,
        book,
        counters,
        outbox,
        rejects: Rejects::new(STAGE, bus.subjects()),
        subscriptions: Some((risk, forecasts)),
    };
    tracing::info!(stage = STAGE, "alert router started");
    Ok(router.start())
}

type Refusal = (Option<String>, Invalid);

fn out_of_order(server: &str, error: impl std::fmt::Display) -> Refusal {
    (
        Some(server.to_string()),
        Invalid::new(RejectKind::OutOfOrder, error.to_string()),
    )
}

impl AlertRouter {
    fn on_risk(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<AlertEvent>, Refusal> {
        let subject_server = || server_of_subject(subject).map(str::to_string);
        let risk: RiskScore = wire::decode(payload).map_err(|error| {
            (
                subject_server(),
                Invalid::new(error.kind(), error.to_string()),
            )
        })?;
        check_risk(subject, &risk).map_err(|invalid| (subject_server(), invalid))?;
        let event = self
            .book
            .on_risk(&risk)
            .map_err(|error| out_of_order(&risk.server, error))?;
        Ok(event.into_iter().collect())
    }

    fn on_forecast(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<AlertEvent>, Refusal> {
        let subject_server = || server_of_subject(subject).map(str::to_string);
        let forecast: Forecast = wire::decode(payload).map_err(|error| {
            (
                subject_server(),
                Invalid::new(error.kind(), error.to_string()),
            )
        })?;
        check_forecast(subject, &forecast).map_err(|invalid| (subject_server(), invalid))?;
        self.book
            .on_forecast(&forecast)
            .map_err(|error| out_of_order(&forecast.server, error))
    }
}

impl StreamHandler<async_nats::Message> for AlertRouter {
    fn handle(&mut self, message: async_nats::Message, _: &mut Context<Self>) {
        self.counters.received();
        let subject = message.subject.as_str();
        let outcome = if self.subjects.is_forecast(subject) {
            self.on_forecast(subject, &message.payload)
        } else {
            self.on_risk(subject, &message.payload)
        };
        match outcome {
            Ok(events) => {
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
                    self.outbox.send_to_stream(subject, &event);
                }
            }
            Err((server, invalid)) => self.rejects.reject(
                &self.counters,
                &self.outbox,
                subject,
                server,
                invalid.kind,
                invalid.reason,
            ),
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(
            stage = STAGE,
            "a subscription ended; the alert router goes on with the other"
        );
    }
}

impl Handler<GetCounters> for AlertRouter {
    type Result = MessageResult<GetCounters>;

    fn handle(&mut self, _: GetCounters, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.counters.snapshot())
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
