//! The gateway: the fleet's state over HTTP — the original's API in its shapes, fleetcast's
//! own API under `/api/v1/`, push updates (Server-Sent Events), Prometheus `/metrics`, and the
//! dashboard at `/`.
//!
//! - **Consumes** `forecasts.>` ([`Forecast`](crate::wire::Forecast)), `risk.>`
//!   ([`RiskScore`](crate::wire::RiskScore)), `alerts.>` ([`AlertEvent`](crate::wire::AlertEvent)),
//!   `summary.fleet` ([`FleetSummary`](crate::wire::FleetSummary)), `status.>`
//!   ([`StageStatus`](crate::wire::StageStatus)) and `metrics.>`
//!   ([`MetricSample`](crate::wire::MetricSample)), as core subscriptions of an
//!   [`Intake`]; sends `$SRV.STATS` / `$SRV.INFO` requests of its own ([`poller`]) to read
//!   every stage's counters.
//! - **Publishes** through its stage's outbox: accepted `POST /feed/data` records on
//!   `metrics.<server>` (JetStream publishes, acknowledged before the reply), refused ones on
//!   `rejected.gateway` ([`Rejection`](crate::wire::Rejection)); scenario requests on
//!   `control.scenario` for `POST /api/v1/scenario` (a request, answered by the generator).
//! - **Counters** ([stage toolkit](crate::actors::stage), micro service `fleetcast-gateway`):
//!   `received` feed records, `accepted` those stored, `rejected` those refused (by kind),
//!   `published` (stored records and dead letters), `consumer_lag` (messages its
//!   subscriptions hold); extras `requests` (HTTP requests served), `feed_posts` (`POST
//!   /feed/data` requests), `rate_limited` (of those, refused by the rate limit),
//!   `not_stored` (accepted records the stream did not store), `bus_messages` (messages
//!   taken off its subscriptions); facts `listen` (the address), `servers` and
//!   `sse_clients`.
//! - **State** ([`snapshot::Snapshot`]): per server the latest sample and the step means of
//!   the last `gateway.recent_steps` steps, the latest forecast, risk score and open alerts;
//!   the latest fleet summary and stage status. A request reads this state: it never runs the
//!   model and never scans a stream, except the alert-history endpoints, which read the
//!   ALERTS stream from the start of their range. Memory is O(servers × (horizon + recent
//!   steps)).
//! - **Start-up** ([`spawn`]): builds its stage (micro service, outbox), subscribes, then
//!   reads back the latest message per server of the METRICS, FORECASTS and RISK streams
//!   and the ALERTS history (to know the open alerts), binds the HTTP server (a bind failure
//!   stops the start), then goes live.
//!   Messages that arrived during the read-back are applied after it; a duplicate or older
//!   message changes nothing.
//! - **Fails** only at start (its micro service, subscribing, reading the streams,
//!   binding). Afterwards an undecodable message is counted and skipped; a lost NATS
//!   connection leaves the last state served (the client reconnects); an HTTP error is
//!   answered with a JSON body naming what is wrong.
//! - **Drain** ([`Drain`], last in pipeline order, so it serves while the others drain):
//!   the HTTP server stops taking connections and finishes the requests in hand (a feed
//!   batch's publishes included), the subscriptions hand over what they received, the last
//!   push events go out, then the service stops and the outbox flushes. [`Stop`] stops it at
//!   once, the HTTP server with it.
//!
//! Files: [`snapshot`] (the state), [`views`] (what responses are made of), [`legacy`] (the
//! original's endpoints), [`api`] (`/api/v1`), [`feed`] (`POST /feed/data`), [`history`]
//! (alert history from the stream), [`events`] (SSE), [`prometheus`] (`/metrics`), [`poller`]
//! (`$SRV.STATS`/`$SRV.INFO` and JetStream state), [`auth`] (API key, CORS, rate limit), [`assets`] (the dashboard).

pub mod api;
pub mod assets;
pub mod auth;
pub mod events;
pub mod feed;
pub mod history;
pub mod legacy;
pub mod poller;
pub mod prometheus;
pub mod snapshot;
pub mod views;

pub use crate::actors::stage::Stop;
pub use crate::settings::GatewaySettings;

use self::events::Push;
use self::snapshot::{Change, Snapshot};
use crate::actors::stage::{
    self, AsyncStage, Drain, Extra, Intake, IntakeError, ReplayError, ServiceError, Stage,
    StageHandle, StageSpec, Staged, Tracked, replay,
};
use crate::bus::Bus;
use crate::samples::IngestRules;
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subject, Subjects};
use crate::wire::{self, RiskScore};
use actix::prelude::*;
use actix_web::{App, HttpServer, web};
use async_nats::jetstream::consumer::DeliverPolicy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The stage name, in logs and `/metrics`.
pub const STAGE: &str = "gateway";

/// Every route the gateway serves, `(method, path)`; the OpenAPI document lists each one (a
/// test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/status"),
    ("GET", "/predictions/current"),
    ("GET", "/alerts/active"),
    ("GET", "/historical/alerts"),
    ("GET", "/historical/export/alerts"),
    ("POST", "/feed/data"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/servers"),
    ("GET", "/api/v1/servers/{server}"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/summary"),
    ("GET", "/api/v1/scenario"),
    ("POST", "/api/v1/scenario"),
    ("GET", "/api/v1/model"),
    ("GET", "/api/v1/stages"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/"),
    ("GET", "/assets/{file}"),
];

/// The gateway's own counters (extras of its stage counters), in [`GatewayExtras`]' order.
pub const EXTRAS: [&str; 5] = [
    "requests",
    "feed_posts",
    "rate_limited",
    "not_stored",
    "bus_messages",
];

/// Fact: the address the HTTP server listens on.
pub const FACT_LISTEN: &str = "listen";
/// Fact: servers the gateway knows.
pub const FACT_SERVERS: &str = "servers";
/// Fact: server-sent-event clients connected.
pub const FACT_SSE_CLIENTS: &str = "sse_clients";

/// Handles of the gateway's own counters.
#[derive(Debug, Clone)]
pub struct GatewayExtras {
    /// HTTP requests served (every route; `/metrics` has them by route and status).
    pub requests: Extra,
    /// `POST /feed/data` requests, whatever their outcome.
    pub feed_posts: Extra,
    /// `POST /feed/data` requests refused by the rate limit.
    pub rate_limited: Extra,
    /// Accepted feed records the stream did not store.
    pub not_stored: Extra,
    /// Messages taken off the subscriptions.
    pub bus_messages: Extra,
}

impl GatewayExtras {
    fn of(stage: &Stage) -> GatewayExtras {
        let [requests, feed_posts, rate_limited, not_stored, bus_messages] =
            EXTRAS.map(|name| stage.counters().extra(name));
        GatewayExtras {
            requests,
            feed_posts,
            rate_limited,
            not_stored,
            bus_messages,
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Its micro service could not start.
    #[error("starting the gateway's micro service")]
    Service(#[from] ServiceError),
    /// A subscription failed or could not be confirmed.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// A stream could not be read back.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {address} (gateway.bind)")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// What every HTTP handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The fleet.
    pub snapshot: Arc<RwLock<Snapshot>>,
    /// Push channel.
    pub push: Arc<Push>,
    /// The bus (scenario requests, history reads).
    pub bus: Bus,
    /// Its stage's counters, outbox and rejections, for the handlers (feed publishes).
    pub stage: AsyncStage,
    /// Its own counters.
    pub extras: GatewayExtras,
    /// Every setting (alerts, gateway, window keeper, time).
    pub settings: Arc<Settings>,
    /// What the poller last read from the stages and JetStream.
    pub polled: Arc<RwLock<poller::Polled>>,
    /// `/predictions/current` per-server fragments.
    pub predictions: legacy::PredictionsCache,
    /// `POST /feed/data` rate limit.
    pub limiter: auth::RateLimiter,
    /// Requests served, by route and status class.
    pub requests: auth::RequestCounters,
    /// When the gateway started.
    pub started: Instant,
}

impl AppState {
    /// Reads the snapshot (a poisoned lock still holds a usable state: every write is a few
    /// field updates).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The running gateway: its stage handle and the address it listens on.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The actor (send it [`Drain`] or [`Stop`]), its identity and live counters.
    pub stage: StageHandle<GatewayActor>,
    /// Where the HTTP server listens (the bound port when `gateway.bind` asked for 0).
    pub local_addr: SocketAddr,
    /// Shared state, for tests and benches.
    pub state: web::Data<AppState>,
}

/// What kind of message a subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Metrics,
    Forecasts,
    Risk,
    Alerts,
    Summary,
    Status,
}

/// What kind of message `subject` carries (parsed by [`Subjects::parse`], the one place
/// subjects are taken apart); `None` for anything the gateway does not read.
fn kind_of(subjects: &Subjects, subject: &str) -> Option<Kind> {
    Some(match subjects.parse(subject)? {
        Subject::Metrics { .. } => Kind::Metrics,
        Subject::Forecast { .. } => Kind::Forecasts,
        Subject::Risk { .. } => Kind::Risk,
        Subject::Alert { .. } => Kind::Alerts,
        Subject::FleetSummary => Kind::Summary,
        Subject::Status { .. } => Kind::Status,
        _ => return None,
    })
}

/// The actor that feeds the snapshot and the push channel; start it with [`spawn`].
pub struct GatewayActor {
    stage: Stage,
    intake: Intake,
    bus_messages: Extra,
    subjects: Subjects,
    snapshot: Arc<RwLock<Snapshot>>,
    push: Arc<Push>,
    push_interval: Duration,
    subscriptions: Vec<Tracked<async_nats::Subscriber>>,
    pending_risk: BTreeMap<String, Arc<RiskScore>>,
    pending_forecasts: BTreeMap<String, (i64, String, String)>,
    server: actix_web::dev::ServerHandle,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for subscription in self.subscriptions.drain(..) {
            ctx.add_stream(subscription);
        }
        ctx.run_interval(self.push_interval, |actor, _| {
            actor.flush_pending();
            actor.refresh_facts();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let server = self.server.clone();
        actix::spawn(async move { server.stop(false).await });
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
        tracing::info!(stage = STAGE, "gateway stopped");
    }
}

impl Staged for GatewayActor {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl GatewayActor {
    /// Applies one message to the snapshot and queues or sends what it changed.
    fn apply(&mut self, subject: &str, payload: &[u8]) {
        let Some(kind) = kind_of(&self.subjects, subject) else {
            return;
        };
        let change = {
            let mut snapshot = self
                .snapshot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let outcome = match kind {
                Kind::Metrics => Ok(snapshot.apply_sample(subject, payload, wire::now_ms())),
                Kind::Forecasts => snapshot.apply_forecast(payload),
                Kind::Risk => snapshot.apply_risk(payload),
                Kind::Alerts => snapshot.apply_alert(payload),
                Kind::Summary => snapshot.apply_summary(payload),
                Kind::Status => snapshot.apply_status(payload),
            };
            match outcome {
                Ok(change) => change,
                // `status.<stage>` also carries the inputs' `TargetHealth`: not a stage status,
                // and not a fault.
                Err(_) if kind == Kind::Status => Change::None,
                Err(error) => {
                    snapshot.received.skipped += 1;
                    tracing::debug!(stage = STAGE, subject, %error, "message skipped");
                    Change::None
                }
            }
        };
        match change {
            Change::None | Change::Sample(_) => {}
            Change::Risk(risk) => {
                self.pending_risk.insert(risk.server.clone(), risk);
            }
            Change::Forecast(server) => {
                let snapshot = self
                    .snapshot
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(forecast) = snapshot
                    .servers
                    .get(&server)
                    .and_then(|entry| entry.forecast.as_ref())
                {
                    let origin = forecast.origin_s;
                    let model = (forecast.model.clone(), forecast.model_version.clone());
                    drop(snapshot);
                    self.pending_forecasts
                        .insert(server, (origin, model.0, model.1));
                }
            }
            Change::Alert(event) => self.push.send("alert", &*event),
            Change::Summary(summary) => self.push.send("summary", &*summary),
            Change::Status(status) => self.push.send("status", &*status),
        }
    }

    /// What the service reports besides the counters: servers known, push clients.
    fn refresh_facts(&self) {
        let servers = self
            .snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .servers
            .len();
        let facts = self.stage.facts();
        facts.set(FACT_SERVERS, servers);
        facts.set(FACT_SSE_CLIENTS, self.push.clients());
    }

    /// Sends the risk and forecast changes gathered since the last flush as one event each.
    fn flush_pending(&mut self) {
        if !self.pending_risk.is_empty() {
            let servers: Vec<serde_json::Value> = std::mem::take(&mut self.pending_risk)
                .into_values()
                .map(|risk| {
                    serde_json::json!({
                        "server": risk.server,
                        "profile": risk.profile,
                        "score": risk.score,
                        "level": risk.level,
                        "sample_ms": risk.sample_ms,
                        "forecast_status": risk.forecast_status,
                    })
                })
                .collect();
            self.push
                .send("risk", &serde_json::json!({ "servers": servers }));
        }
        if !self.pending_forecasts.is_empty() {
            let servers: Vec<serde_json::Value> = std::mem::take(&mut self.pending_forecasts)
                .into_iter()
                .map(|(server, (origin_s, model, model_version))| {
                    serde_json::json!({
                        "server": server,
                        "origin_s": origin_s,
                        "model": model,
                        "model_version": model_version,
                    })
                })
                .collect();
            self.push
                .send("forecast", &serde_json::json!({ "servers": servers }));
        }
    }
}

impl StreamHandler<async_nats::Message> for GatewayActor {
    fn handle(&mut self, message: async_nats::Message, _: &mut Context<Self>) {
        self.bus_messages.incr();
        self.apply(message.subject.as_str(), &message.payload);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        if !self.intake.is_draining() {
            tracing::warn!(
                stage = STAGE,
                "a subscription ended; the gateway goes on with the others"
            );
        }
    }
}

impl Handler<Stop> for GatewayActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Drain> for GatewayActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        // A graceful stop: no new connection, the requests in hand (and their publishes)
        // finish; then the subscriptions hand over what they received.
        let server = self.server.clone();
        let intake = self.intake.clone();
        stage::drain(
            async move {
                server.stop(true).await;
                intake.drain().await;
            },
            |gateway: &mut GatewayActor, _| {
                gateway.flush_pending();
                if let Some(poller) = gateway.poller.take() {
                    poller.abort();
                }
            },
        )
    }
}

/// Builds its stage (micro service, outbox), subscribes, reads the streams back, binds the
/// HTTP server and starts the gateway.
///
/// # Errors
/// [`GatewayError`] when the micro service, a subscription, a read-back or the bind fails.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Gateway, GatewayError> {
    let subjects = bus.subjects().clone();
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast gateway: HTTP API, push updates, /metrics, the dashboard and POST /feed/data",
        )
        .extras(&EXTRAS),
    )
    .await?;
    let extras = GatewayExtras::of(&stage);
    let intake = Intake::new(&bus, stage.counters());
    let wanted = [
        subjects.forecasts_all(),
        subjects.risk_all(),
        subjects.alerts_all(),
        subjects.fleet_summary(),
        subjects.status_all(),
        subjects.metrics_all(),
    ];
    let mut subscriptions = Vec::with_capacity(wanted.len());
    for subject in wanted {
        subscriptions.push(intake.subscribe(subject).await?);
    }
    intake.confirm().await?;

    let mut snapshot = Snapshot::new(
        settings.alerts.scale(),
        IngestRules::from_settings(settings),
        settings.gateway.recent_steps,
    );
    let sources = [
        (
            StreamKind::Metrics,
            subjects.metrics_all(),
            DeliverPolicy::LastPerSubject,
        ),
        (
            StreamKind::Forecasts,
            subjects.forecasts_all(),
            DeliverPolicy::LastPerSubject,
        ),
        (
            StreamKind::Risk,
            subjects.risk_all(),
            DeliverPolicy::LastPerSubject,
        ),
        (
            StreamKind::Alerts,
            subjects.alerts_all(),
            DeliverPolicy::All,
        ),
    ];
    let mut replayed = 0;
    for (kind, filter, policy) in sources {
        for message in replay(&bus, kind, filter, policy).await? {
            let subject = message.subject.as_str();
            let outcome = match kind {
                StreamKind::Metrics => {
                    Ok(snapshot.apply_sample(subject, &message.payload, wire::now_ms()))
                }
                StreamKind::Forecasts => snapshot.apply_forecast(&message.payload),
                StreamKind::Risk => snapshot.apply_risk(&message.payload),
                _ => snapshot.apply_alert(&message.payload),
            };
            if outcome.is_ok() {
                replayed += 1;
            }
        }
    }
    let servers = snapshot.servers.len();
    let snapshot = Arc::new(RwLock::new(snapshot));
    let push = Arc::new(Push::new());
    let polled = Arc::new(RwLock::new(poller::Polled::default()));
    let gateway = &settings.gateway;
    let state = web::Data::new(AppState {
        snapshot: snapshot.clone(),
        push: push.clone(),
        bus: bus.clone(),
        stage: stage.async_side(),
        extras: extras.clone(),
        settings: Arc::new(settings.clone()),
        polled: polled.clone(),
        predictions: legacy::PredictionsCache::default(),
        limiter: auth::RateLimiter::new(gateway.feed_rate_per_minute),
        requests: auth::RequestCounters::new(extras.requests.clone()),
        started: Instant::now(),
    });
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let state = app_state.clone();
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(
                state.settings.gateway.max_body_bytes,
            ))
            .wrap(actix_web::middleware::from_fn(auth::guard))
            .configure(routes)
    })
    .workers(gateway.workers)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(gateway.bind)
    .map_err(|source| GatewayError::Bind {
        address: gateway.bind,
        source,
    })?;
    let local_addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| GatewayError::Bind {
            address: gateway.bind,
            source: std::io::Error::other("no address bound"),
        })?;
    let server = server.run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(stage = STAGE, %error, "http server ended");
        }
    });
    stage.facts().set(FACT_LISTEN, local_addr);
    let poller = tokio::spawn(poller::poll(
        bus.clone(),
        polled,
        Duration::from_secs(gateway.poll_interval_seconds),
    ));
    tracing::info!(
        stage = STAGE,
        address = %local_addr,
        url = %format!("http://{local_addr}/"),
        replayed,
        servers,
        auth = !gateway.api_key.is_empty(),
        "gateway listening: dashboard at the url"
    );
    let actor = GatewayActor {
        intake,
        bus_messages: extras.bus_messages,
        subjects: subjects.clone(),
        snapshot,
        push,
        push_interval: Duration::from_millis(gateway.push_interval_ms),
        subscriptions,
        pending_risk: BTreeMap::new(),
        pending_forecasts: BTreeMap::new(),
        server: handle,
        poller: Some(poller),
        stage,
    };
    actor.refresh_facts();
    Ok(Gateway {
        stage: stage::start(actor),
        local_addr,
        state,
    })
}

/// Every route; [`ROUTES`] lists the same.
fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(legacy::health))
        .route("/status", web::get().to(legacy::status))
        .route(
            "/predictions/current",
            web::get().to(legacy::predictions_current),
        )
        .route("/alerts/active", web::get().to(legacy::alerts_active))
        .route(
            "/historical/alerts",
            web::get().to(legacy::historical_alerts),
        )
        .route(
            "/historical/export/alerts",
            web::get().to(legacy::historical_export_alerts),
        )
        .route("/feed/data", web::post().to(feed::feed_data))
        .route("/metrics", web::get().to(prometheus::metrics))
        .route("/api/v1/servers", web::get().to(api::servers))
        .route("/api/v1/servers/{server}", web::get().to(api::server))
        .route("/api/v1/alerts", web::get().to(api::alerts))
        .route("/api/v1/summary", web::get().to(api::summary))
        .route("/api/v1/scenario", web::get().to(api::scenario_status))
        .route("/api/v1/scenario", web::post().to(api::scenario_switch))
        .route("/api/v1/model", web::get().to(api::model))
        .route("/api/v1/stages", web::get().to(api::stages))
        .route("/api/v1/events", web::get().to(api::events))
        .route("/api/v1/openapi.json", web::get().to(api::openapi))
        .route("/", web::get().to(assets::index))
        .route("/assets/{file}", web::get().to(assets::file))
        .default_service(web::to(api::not_found));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subjects map to their kind under the deployment's prefix only.
    #[test]
    fn subjects_are_dispatched_by_kind() {
        let fc = Subjects::new("fc");
        assert_eq!(kind_of(&fc, "fc.metrics.a"), Some(Kind::Metrics));
        assert_eq!(kind_of(&fc, "fc.alerts.critical.a"), Some(Kind::Alerts));
        assert_eq!(kind_of(&fc, "fc.summary.fleet"), Some(Kind::Summary));
        assert_eq!(kind_of(&fc, "fc.status.window_keeper"), Some(Kind::Status));
        assert_eq!(kind_of(&fc, "fcx.metrics.a"), None);
        assert_eq!(kind_of(&fc, "fc.jobs.predict.a"), None);
    }

    /// Every route is in the OpenAPI document, with its method.
    #[test]
    fn openapi_lists_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(api::OPENAPI).expect("openapi.json is JSON");
        assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        for (method, path) in ROUTES {
            let operation = &document["paths"][*path][method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {path} is not in openapi.json"
            );
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has no responses"
            );
        }
        let documented = document["paths"].as_object().unwrap().len();
        let distinct: std::collections::BTreeSet<_> = ROUTES.iter().map(|(_, path)| path).collect();
        assert_eq!(
            documented,
            distinct.len(),
            "openapi.json documents a route that is not served"
        );
    }
}
