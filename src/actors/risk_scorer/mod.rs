//! The risk scorer: every server's risk now, from its latest sample and latest forecast,
//! and the periodic fleet summary.
//!
//! - **Consumes** `metrics.>` ([`MetricSample`]) and `forecasts.>` ([`Forecast`]).
//! - **Publishes** `risk.<server>` ([`RiskScore`]) on every accepted sample, and on every
//!   accepted forecast of a server that has a sample; `summary.fleet` ([`FleetSummary`](crate::wire::FleetSummary))
//!   every `summary.interval_seconds` of wall time when some score changed; refused inputs
//!   on `rejected.risk_scorer` ([`Rejection`](crate::wire::Rejection)).
//! - **State**, per server: the latest value of each metric (a sample may carry a subset, so
//!   values merge), the time of the latest sample, the latest forecast and the latest
//!   score. Memory is O(servers × horizon).
//! - **Scoring** is [`scoring::assess`] (catalog §6 with profile-aware memory tiers, see
//!   [`scoring`]); the level is the one scale's ([`crate::levels`]). "Now" is the latest
//!   sample's own timestamp, so simulated time works as real time. A server with a forecast
//!   but no sample yet is held until its first sample.
//! - **Restart**: before it starts, the scorer reads back the latest sample and forecast of
//!   every server from the METRICS and FORECASTS JetStream streams (`LastPerSubject`), so
//!   a restarted scorer has the fleet's view at once; replayed input is scored silently
//!   (no risk is re-published until the server's next sample or forecast) and feeds the
//!   next fleet summary.
//! - **Fails** only at start (subscribing, reading the streams back); afterwards bad input (undecodable, another
//!   schema version, a sample or forecast for another server than its subject, NaN or
//!   out-of-range values, wrong-length series, an older sample or forecast than the one
//!   held) is refused with its reason on the dead-letter subject, counted, and the actor
//!   goes on. A failed publish is counted as an error and logged.

pub mod inputs;
pub mod scoring;
pub mod summary;

use self::inputs::{Invalid, check_forecast, check_sample, server_of_subject};
use self::scoring::{RiskConfig, assess};
use crate::actors::stage::{GetCounters, Outbox, Rejects, StageCounters, Stop, replay};
use crate::bus::Bus;
use crate::catalog::{Metric, Profile};
use crate::levels::Scale;
use crate::settings::Settings;
use crate::subjects::StreamKind;
use crate::subjects::Subjects;
use crate::wire::{self, Forecast, MetricSample, RejectKind, RiskScore, SCHEMA_VERSION};
use actix::prelude::*;
use async_nats::jetstream::consumer::DeliverPolicy;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The stage name, in rejections and logs.
pub const STAGE: &str = "risk_scorer";

/// Why the risk scorer could not start.
#[derive(Debug, thiserror::Error)]
pub enum RiskScorerError {
    /// A stream could not be read back.
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

/// What the scorer holds about one server.
#[derive(Debug)]
struct ServerState {
    profile: Profile,
    /// Latest value per metric, merged over samples.
    current: BTreeMap<String, f64>,
    /// Time of the latest sample, unix ms.
    sample_ms: Option<i64>,
    forecast: Option<Forecast>,
    score: Option<f64>,
}

/// Decodes a payload, naming the subject's server when it cannot be decoded.
fn decode<T: wire::WireMessage>(
    subject: &str,
    payload: &[u8],
) -> Result<T, (Option<String>, Invalid)> {
    wire::decode(payload).map_err(|error| {
        (
            server_of_subject(subject).map(str::to_string),
            Invalid::new(error.kind(), error.to_string()),
        )
    })
}

/// The risk scorer actor; start it with [`spawn`].
pub struct RiskScorer {
    subjects: Subjects,
    config: RiskConfig,
    scale: Scale,
    summary_top: usize,
    summary_interval: Duration,
    servers: HashMap<String, ServerState>,
    /// A score changed since the last summary.
    changed: bool,
    counters: StageCounters,
    outbox: Outbox,
    rejects: Rejects,
    subscriptions: Option<(async_nats::Subscriber, async_nats::Subscriber)>,
}

impl Actor for RiskScorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((metrics, forecasts)) = self.subscriptions.take() {
            ctx.add_stream(metrics);
            ctx.add_stream(forecasts);
        }
        ctx.run_interval(self.summary_interval, |actor, _| actor.publish_summary());
    }
}

/// Subscribes to samples and forecasts, then starts the risk scorer.
///
/// # Errors
/// [`RiskScorerError`] when a subscription fails.
pub async fn spawn(settings: &Settings, bus: Bus) -> Result<Addr<RiskScorer>, RiskScorerError> {
    let subjects = bus.subjects().clone();
    let subscribe = |subject: String| {
        let client = bus.client().clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| RiskScorerError::Subscribe { subject, source })
        }
    };
    let metrics = subscribe(subjects.metrics_all()).await?;
    let forecasts = subscribe(subjects.forecasts_all()).await?;
    bus.client().flush().await.map_err(RiskScorerError::Flush)?;
    let counters = StageCounters::default();
    let outbox = Outbox::start(bus.client().clone(), counters.clone(), STAGE);
    let mut scorer = RiskScorer {
        subjects,
        config: RiskConfig::from(&settings.risk),
        scale: settings.alerts.scale(),
        summary_top: settings.summary.top as usize,
        summary_interval: Duration::from_secs(settings.summary.interval_seconds),
        servers: HashMap::new(),
        changed: false,
        counters,
        outbox,
        rejects: Rejects::new(STAGE, bus.subjects()),
        subscriptions: Some((metrics, forecasts)),
    };
    // The live subscriptions buffer while the streams are read back; a message seen twice
    // has the same time as its replayed copy, which is accepted.
    let mut replayed = 0;
    let sources = [
        (StreamKind::Metrics, bus.subjects().metrics_all()),
        (StreamKind::Forecasts, bus.subjects().forecasts_all()),
    ];
    for (kind, filter) in sources {
        for message in replay(&bus, kind, filter, DeliverPolicy::LastPerSubject).await? {
            let subject = message.subject.as_str();
            let outcome = match kind {
                StreamKind::Forecasts => scorer.on_forecast(subject, &message.payload),
                _ => scorer.on_sample(subject, &message.payload),
            };
            match outcome {
                Ok(server) => {
                    scorer.score(&server, false);
                    replayed += 1;
                }
                Err((_, invalid)) => {
                    tracing::debug!(stage = STAGE, subject, reason = %invalid, "replayed input skipped")
                }
            }
        }
    }
    tracing::info!(
        stage = STAGE,
        replayed,
        servers = scorer.servers.len(),
        "risk scorer started"
    );
    Ok(scorer.start())
}

impl RiskScorer {
    fn reject(&mut self, subject: &str, server: Option<String>, invalid: Invalid) {
        self.rejects.reject(
            &self.counters,
            &self.outbox,
            subject,
            server,
            invalid.kind,
            invalid.reason,
        );
    }

    /// The state of `server`, created empty with `profile` on first sight.
    fn state_of(&mut self, server: &str, profile: Profile) -> &mut ServerState {
        self.servers
            .entry(server.to_string())
            .or_insert_with(|| ServerState {
                profile,
                current: BTreeMap::new(),
                sample_ms: None,
                forecast: None,
                score: None,
            })
    }

    fn on_sample(
        &mut self,
        subject: &str,
        payload: &[u8],
    ) -> Result<String, (Option<String>, Invalid)> {
        let subject_server = || server_of_subject(subject).map(str::to_string);
        let sample: MetricSample = decode(subject, payload)?;
        let profile =
            check_sample(subject, &sample).map_err(|invalid| (subject_server(), invalid))?;
        let state = self.state_of(&sample.server, profile);
        if let Some(latest) = state.sample_ms.filter(|&latest| sample.ts_ms < latest) {
            return Err((
                Some(sample.server),
                Invalid::new(
                    RejectKind::OutOfOrder,
                    format!(
                        "sample at {} ms is older than the latest at {latest} ms",
                        sample.ts_ms
                    ),
                ),
            ));
        }
        state.profile = profile;
        state.sample_ms = Some(sample.ts_ms);
        for (name, value) in sample.metrics {
            if Metric::from_name(&name).is_some() {
                state.current.insert(name, value);
            }
        }
        Ok(sample.server)
    }

    fn on_forecast(
        &mut self,
        subject: &str,
        payload: &[u8],
    ) -> Result<String, (Option<String>, Invalid)> {
        let subject_server = || server_of_subject(subject).map(str::to_string);
        let forecast: Forecast = decode(subject, payload)?;
        let profile =
            check_forecast(subject, &forecast).map_err(|invalid| (subject_server(), invalid))?;
        let state = self.state_of(&forecast.server, profile);
        if let Some(latest) = state
            .forecast
            .as_ref()
            .map(|held| held.origin_s)
            .filter(|&latest| forecast.origin_s < latest)
        {
            return Err((
                Some(forecast.server),
                Invalid::new(
                    RejectKind::OutOfOrder,
                    format!(
                        "forecast from origin {} s is older than the one held (origin {latest} s)",
                        forecast.origin_s
                    ),
                ),
            ));
        }
        let server = forecast.server.clone();
        state.forecast = Some(forecast);
        Ok(server)
    }

    /// Scores `server`, when it has a sample, and queues its risk when `publish`.
    fn score(&mut self, server: &str, publish: bool) {
        let Some(state) = self.servers.get_mut(server) else {
            return;
        };
        let Some(sample_ms) = state.sample_ms else {
            return;
        };
        let assessment = assess(
            &self.config,
            state.profile,
            &state.current,
            state.forecast.as_ref(),
            sample_ms.div_euclid(1000),
        );
        let used = assessment.forecast_status == scoring::ForecastStatus::Used;
        let risk = RiskScore {
            v: SCHEMA_VERSION,
            server: server.to_string(),
            profile: state.profile.name().to_string(),
            at_ms: wire::now_ms(),
            sample_ms,
            forecast_origin_s: state
                .forecast
                .as_ref()
                .filter(|_| used)
                .map(|forecast| forecast.origin_s),
            score: assessment.score,
            current: assessment.current,
            predicted: assessment.predicted,
            level: self.scale.level_of(assessment.score).name().to_string(),
            factors: assessment.factors,
            forecast_status: assessment.forecast_status.name().to_string(),
        };
        state.score = Some(risk.score);
        self.changed = true;
        if publish {
            self.outbox
                .send_to_stream(self.subjects.risk(server), &risk);
        }
    }

    /// Publishes the fleet summary when some score changed since the last one.
    fn publish_summary(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        let views = self.servers.iter().filter_map(|(server, state)| {
            Some(summary::ServerView {
                server,
                score: state.score?,
                forecast: state.forecast.as_ref(),
                now_s: state.sample_ms?.div_euclid(1000),
            })
        });
        let fleet = summary::summarize(views, &self.scale, self.summary_top, wire::now_ms());
        self.outbox.send(self.subjects.fleet_summary(), &fleet);
    }
}

impl StreamHandler<async_nats::Message> for RiskScorer {
    fn handle(&mut self, message: async_nats::Message, _: &mut Context<Self>) {
        self.counters.received();
        let subject = message.subject.as_str();
        let outcome = if self.subjects.is_forecast(subject) {
            self.on_forecast(subject, &message.payload)
        } else {
            self.on_sample(subject, &message.payload)
        };
        match outcome {
            Ok(server) => self.score(&server, true),
            Err((server, invalid)) => self.reject(subject, server, invalid),
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(
            stage = STAGE,
            "a subscription ended; the risk scorer goes on with the other"
        );
    }
}

impl Handler<GetCounters> for RiskScorer {
    type Result = MessageResult<GetCounters>;

    fn handle(&mut self, _: GetCounters, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.counters.snapshot())
    }
}

impl Handler<Stop> for RiskScorer {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Asks for the servers the scorer holds and their latest scores (for tests and the
/// gateway's first view).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "BTreeMap<String, f64>")]
pub struct GetScores;

impl Handler<GetScores> for RiskScorer {
    type Result = MessageResult<GetScores>;

    fn handle(&mut self, _: GetScores, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.servers
                .iter()
                .filter_map(|(server, state)| Some((server.clone(), state.score?)))
                .collect(),
        )
    }
}
