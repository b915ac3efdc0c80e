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
//! - **Input** comes through an [`Intake`], so the scorer's lag is measured
//!   (`consumer_lag`) and a drain loses nothing already received.
//! - **Fails** only at start (its service, subscribing, reading the streams back);
//!   afterwards bad input (undecodable, another schema version, a sample or forecast for
//!   another server than its subject, NaN or out-of-range values, wrong-length series, an
//!   older sample than the one held) is refused with its reason on the
//!   dead-letter subject, counted, and the actor goes on (checks in [`crate::checks`]). A
//!   failed publish is counted (`publish_errors`) and logged.
//! - **Observability and shutdown** come from the [stage toolkit](crate::actors::stage):
//!   counters (extras `replayed`, `summaries`, `summary_checks`: intervals that passed,
//!   `stale_forecasts`: forecasts older than the one held, dropped without a rejection), the
//!   micro service `fleetcast-risk-scorer`
//!   (fact `servers`), a bounded outbox, and [`Drain`]: stop the intake, score what was
//!   received, publish a last summary, flush, stop.

pub mod scoring;
pub mod summary;

use self::scoring::{RiskConfig, assess};
use crate::actors::stage::{
    self, Drain, Extra, Intake, IntakeError, Reject, ReplayError, ServiceError, Stage, StageHandle,
    StageSpec, Staged, Stop, Tracked, replay,
};
use crate::bus::Bus;
use crate::catalog::{Metric, Profile};
use crate::checks::{check_forecast, check_sample};
use crate::levels::Scale;
use crate::settings::Settings;
use crate::subjects::{StreamKind, Subjects};
use crate::wire::{self, Forecast, MetricSample, RejectKind, RiskScore};
use actix::prelude::*;
use async_nats::jetstream::consumer::DeliverPolicy;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The stage name, in rejections and logs.
pub const STAGE: &str = "risk_scorer";

/// Why the risk scorer could not start.
#[derive(Debug, thiserror::Error)]
pub enum RiskScorerError {
    /// Its micro service could not start.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Its input could not be opened.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// A stream could not be read back.
    #[error(transparent)]
    Replay(#[from] ReplayError),
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
    stage: Stage,
    summaries: Extra,
    /// Summary intervals that passed (a summary is sent only when something changed).
    summary_checks: Extra,
    /// Forecasts older than the one held: superseded, counted, dropped.
    stale_forecasts: Extra,
    intake: Intake,
    inputs: Option<(
        Tracked<async_nats::Subscriber>,
        Tracked<async_nats::Subscriber>,
    )>,
}

impl Staged for RiskScorer {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Actor for RiskScorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((metrics, forecasts)) = self.inputs.take() {
            ctx.add_stream(metrics);
            ctx.add_stream(forecasts);
        }
        ctx.run_interval(self.summary_interval, |actor, ctx| {
            actor.publish_summary(ctx);
            actor.summary_checks.incr();
        });
    }
}

/// Builds the stage, subscribes to samples and forecasts, reads the latest of each back from
/// the streams, then starts the risk scorer.
///
/// # Errors
/// [`RiskScorerError`] when the service, a subscription or a replay fails.
pub async fn spawn(
    settings: &Settings,
    bus: Bus,
) -> Result<StageHandle<RiskScorer>, RiskScorerError> {
    let subjects = bus.subjects().clone();
    let stage = Stage::build(
        &bus,
        StageSpec::new(
            STAGE,
            "fleetcast risk scorer: risk per server from samples and forecasts, and the fleet summary",
        )
        .extras(&["replayed", "summaries", "summary_checks", "stale_forecasts"]),
    )
    .await?;
    let intake = Intake::new(&bus, stage.counters());
    let metrics = intake.subscribe(subjects.metrics_all()).await?;
    let forecasts = intake.subscribe(subjects.forecasts_all()).await?;
    intake.confirm().await?;
    let mut scorer = RiskScorer {
        subjects,
        config: RiskConfig::from(&settings.risk),
        scale: settings.alerts.scale(),
        summary_top: settings.summary.top as usize,
        summary_interval: Duration::from_secs(settings.summary.interval_seconds),
        servers: HashMap::new(),
        changed: false,
        summaries: stage.counters().extra("summaries"),
        summary_checks: stage.counters().extra("summary_checks"),
        stale_forecasts: stage.counters().extra("stale_forecasts"),
        stage,
        intake,
        inputs: Some((metrics, forecasts)),
    };
    // The live subscriptions buffer while the streams are read back; a message seen twice
    // has the same time as its replayed copy, which is accepted.
    let replayed = scorer.stage.counters().extra("replayed");
    let sources = [
        (StreamKind::Metrics, bus.subjects().metrics_all()),
        (StreamKind::Forecasts, bus.subjects().forecasts_all()),
    ];
    for (kind, filter) in sources {
        for message in replay(&bus, kind, filter, DeliverPolicy::LastPerSubject).await? {
            let subject = message.subject.as_str();
            let outcome = match kind {
                StreamKind::Forecasts => scorer.on_forecast(subject, &message.payload),
                _ => scorer.on_sample(subject, &message.payload).map(Some),
            };
            match outcome {
                Ok(server) => {
                    if let Some(server) = server {
                        scorer.score(&server);
                    }
                    replayed.incr();
                }
                Err(reject) => {
                    tracing::debug!(stage = STAGE, subject, reason = %reject, "replayed input skipped")
                }
            }
        }
    }
    tracing::info!(
        stage = STAGE,
        replayed = scorer.stage.counters().snapshot().extra("replayed"),
        servers = scorer.servers.len(),
        "risk scorer started"
    );
    Ok(stage::start(scorer))
}

impl RiskScorer {
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

    fn on_sample(&mut self, subject: &str, payload: &[u8]) -> Result<String, Reject> {
        let sample: MetricSample = wire::decode(payload)?;
        let profile = check_sample(&self.subjects, subject, &sample)?;
        let state = self.state_of(&sample.server, profile);
        if let Some(latest) = state.sample_ms.filter(|&latest| sample.ts_ms < latest) {
            return Err(Reject::new(
                RejectKind::OutOfOrder,
                format!(
                    "sample at {} ms is older than the latest at {latest} ms",
                    sample.ts_ms
                ),
            )
            .with_server(sample.server));
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

    /// Takes a forecast in; `None` when it is older than the one held (stale: counted and
    /// dropped, nothing to score).
    fn on_forecast(&mut self, subject: &str, payload: &[u8]) -> Result<Option<String>, Reject> {
        let forecast: Forecast = wire::decode(payload)?;
        let profile = check_forecast(&self.subjects, subject, &forecast)?;
        let state = self.state_of(&forecast.server, profile);
        if let Some(latest) = state
            .forecast
            .as_ref()
            .map(|held| held.origin_s)
            .filter(|&latest| forecast.origin_s < latest)
        {
            // Stale, not bad input: predictor workers finish out of order (during a backfill
            // all the time) and the newer forecast is already held (issue 11).
            self.stale_forecasts.incr();
            tracing::debug!(
                stage = STAGE,
                server = %forecast.server,
                origin_s = forecast.origin_s,
                held_origin_s = latest,
                "stale forecast dropped"
            );
            return Ok(None);
        }
        let server = forecast.server.clone();
        state.forecast = Some(forecast);
        Ok(Some(server))
    }

    /// Scores `server`, when it has a sample.
    fn score(&mut self, server: &str) -> Option<RiskScore> {
        let state = self.servers.get_mut(server)?;
        let sample_ms = state.sample_ms?;
        let assessment = assess(
            &self.config,
            state.profile,
            &state.current,
            state.forecast.as_ref(),
            sample_ms.div_euclid(1000),
        );
        let risk = assessment.into_risk_score(
            server,
            state.profile,
            wire::now_ms(),
            sample_ms,
            state.forecast.as_ref(),
            &self.scale,
        );
        state.score = Some(risk.score);
        self.changed = true;
        Some(risk)
    }

    /// Publishes the fleet summary when some score changed since the last one.
    fn publish_summary(&mut self, ctx: &mut Context<Self>) {
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
        self.stage.facts().set("servers", fleet.servers);
        self.stage
            .publish(ctx, self.subjects.fleet_summary(), &fleet);
        self.summaries.incr();
    }
}

impl StreamHandler<async_nats::Message> for RiskScorer {
    fn handle(&mut self, message: async_nats::Message, ctx: &mut Context<Self>) {
        self.stage.counters().received();
        let subject = message.subject.as_str();
        let outcome = if self.subjects.is_forecast(subject) {
            self.on_forecast(subject, &message.payload)
        } else {
            self.on_sample(subject, &message.payload).map(Some)
        };
        match outcome {
            Ok(None) => self.stage.counters().accepted(),
            Ok(Some(server)) => {
                self.stage.counters().accepted();
                if let Some(risk) = self.score(&server) {
                    self.stage
                        .publish_to_stream(ctx, self.subjects.risk(&server), &risk);
                }
            }
            Err(reject) => {
                let reject = reject.or_server(self.subjects.server_of(subject));
                self.stage.reject(ctx, subject, reject);
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        if !self.intake.is_draining() {
            tracing::warn!(
                stage = STAGE,
                "a subscription ended; the risk scorer goes on with the other"
            );
        }
    }
}

impl Handler<Drain> for RiskScorer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        let intake = self.intake.clone();
        stage::drain(
            async move { intake.drain().await },
            |scorer: &mut RiskScorer, ctx| scorer.publish_summary(ctx),
        )
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
