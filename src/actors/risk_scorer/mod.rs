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
//! - **Input** comes through JetStream durable consumers ([`Durable`]):
//!   `risk_scorer-metrics` on METRICS and `risk_scorer-forecasts` on FORECASTS. Nothing
//!   published while the scorer is slow, busy or stopped is lost (it waits in the streams;
//!   FORECASTS keeps `nats.forecast_history` per server); the consumers' pending counts are
//!   its `consumer_lag`. An input is acknowledged once the risk score it caused is stored
//!   in the RISK stream (at once when it caused none).
//! - **No doubles**: every risk score carries `Nats-Msg-Id: <server>-<sample_ms>-<forecast
//!   origin_s or none>`, what it was computed from, so a score computed again (an input
//!   redelivered after a crash) is dropped by the RISK stream inside its duplicate window.
//! - **Restart**: before it starts, the scorer reads back the latest sample and forecast of
//!   every server from the METRICS and FORECASTS JetStream streams (`LastPerSubject`), so
//!   a restarted scorer has the fleet's view at once; replayed input is scored silently
//!   (no risk is re-published until the server's next sample or forecast) and feeds the
//!   next fleet summary. That view may be ahead of the consumers: inputs published while no
//!   scorer ran are still to come. The first such input of a server older than its replayed
//!   sample (or forecast) replaces the replayed one, so each is scored once, in order.
//!   Afterwards an older input handed out again (`redelivered`) was handled before: counted
//!   `superseded`, acknowledged, not refused.
//! - **Partitioned** (`partitions.count` > 1, [`stage::partition`]): the scorer reads only
//!   the partitions it owns, from `FLEETCAST_IN_RISK_SCORER`, and skips the read-back above;
//!   a claimed partition's servers are rebuilt from its history (scored silently, counted
//!   `replayed`), a lost one's are forgotten.
//! - **Fails** only at start (its service, subscribing, reading the streams back);
//!   afterwards bad input (undecodable, another schema version, a sample or forecast for
//!   another server than its subject, NaN or out-of-range values, wrong-length series, an
//!   older sample than the one held) is refused with its reason on the
//!   dead-letter subject, counted, and the actor goes on (checks in [`crate::checks`]). A
//!   failed publish is counted (`publish_errors`) and logged.
//! - **Observability and shutdown** come from the [stage toolkit](crate::actors::stage):
//!   counters (extras `replayed`, `summaries`, `summary_checks`: intervals that passed,
//!   `stale_forecasts`: forecasts older than the one held, dropped without a rejection,
//!   `superseded`, and the consumers' `redelivered`, `skipped`, `consumer_errors`), the
//!   micro service `fleetcast-risk-scorer`
//!   (fact `servers`), a bounded outbox, and [`Drain`]: stop the deliveries, publish a last
//!   summary, flush, send the last acknowledgements, stop.

pub mod scoring;
pub mod summary;

use self::scoring::{RiskConfig, assess};
use crate::actors::stage::{
    self, Deliveries, Delivery, Drain, Durable, DurableError, Extra, Input, PartitionMap, Reject,
    ReplayError, ServiceError, Stage, StageHandle, StageSpec, Staged, Stop, replay,
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
    Durable(#[from] DurableError),
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
    /// The sample held was read back at start-up, not taken from the consumer yet.
    sample_replayed: bool,
    /// The forecast held was read back at start-up.
    forecast_replayed: bool,
}

/// What became of an accepted input.
#[derive(Debug)]
enum Taken {
    /// Take it into `server`'s state and score it.
    Score(String),
    /// Older than what is held: nothing to score.
    Nothing,
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
    /// Older inputs handed out again, handled before.
    superseded: Extra,
    durable: Durable,
    inputs: Option<Deliveries>,
    /// The partition of each server held (partitioned input only).
    partitions: PartitionMap,
    /// Inputs taken in silently to rebuild a claimed partition.
    replayed: Extra,
}

impl Staged for RiskScorer {
    fn stage(&self) -> &Stage {
        &self.stage
    }
}

impl Actor for RiskScorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(inputs) = self.inputs.take() {
            ctx.add_stream(inputs);
        }
        ctx.run_interval(self.summary_interval, |actor, ctx| {
            actor.publish_summary(ctx);
            actor.summary_checks.incr();
        });
    }
}

/// Builds the stage, binds its durable consumers on samples and forecasts, reads the latest
/// of each back from the streams, then starts the risk scorer.
///
/// # Errors
/// [`RiskScorerError`] when the service, a consumer or a replay fails.
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
        .extras(&[
            "replayed",
            "summaries",
            "summary_checks",
            "stale_forecasts",
            "superseded",
        ])
        .extras(&stage::partition::extras(settings)),
    )
    .await?;
    let (durable, inputs) = Durable::open_stage(
        &bus,
        &stage,
        settings,
        &[
            (StreamKind::Metrics, subjects.metrics_all()),
            (StreamKind::Forecasts, subjects.forecasts_all()),
        ],
    )
    .await?;
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
        superseded: stage.counters().extra("superseded"),
        replayed: stage.counters().extra("replayed"),
        partitions: PartitionMap::default(),
        stage,
        durable,
        inputs: Some(inputs),
    };
    // The consumers wait while the streams are read back; a message seen twice has the same
    // time as its replayed copy, which is accepted.
    let replayed = scorer.stage.counters().extra("replayed");
    let sources = [
        (StreamKind::Metrics, bus.subjects().metrics_all()),
        (StreamKind::Forecasts, bus.subjects().forecasts_all()),
    ];
    // Partitioned, each claimed partition's state is rebuilt from its own history instead.
    let sources = if settings.partitions.enabled() {
        Vec::new()
    } else {
        sources.to_vec()
    };
    for (kind, filter) in sources {
        for message in replay(&bus, kind, filter, DeliverPolicy::LastPerSubject).await? {
            let subject = message.subject.as_str();
            let outcome = match kind {
                StreamKind::Forecasts => scorer.on_forecast(subject, &message.payload, false),
                _ => scorer.on_sample(subject, &message.payload, false),
            };
            match outcome {
                Ok(taken) => {
                    if let Taken::Score(server) = taken {
                        scorer.score(&server);
                        if let Some(state) = scorer.servers.get_mut(&server) {
                            match kind {
                                StreamKind::Forecasts => state.forecast_replayed = true,
                                _ => state.sample_replayed = true,
                            }
                        }
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
                sample_replayed: false,
                forecast_replayed: false,
            })
    }

    /// Takes a sample in. One older than the sample held replaces a replayed one (the
    /// replay ran ahead of the consumer), is `superseded` when `redelivered` (handled
    /// before), and is refused as out of order otherwise.
    fn on_sample(
        &mut self,
        subject: &str,
        payload: &[u8],
        redelivered: bool,
    ) -> Result<Taken, Reject> {
        let sample: MetricSample = wire::decode(payload)?;
        let profile = check_sample(&self.subjects, subject, &sample)?;
        let state = self.state_of(&sample.server, profile);
        if std::mem::take(&mut state.sample_replayed)
            && state.sample_ms.is_some_and(|latest| sample.ts_ms < latest)
        {
            state.sample_ms = None;
            state.current.clear();
        }
        if let Some(latest) = state.sample_ms.filter(|&latest| sample.ts_ms < latest) {
            if redelivered {
                self.superseded.incr();
                return Ok(Taken::Nothing);
            }
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
        Ok(Taken::Score(sample.server))
    }

    /// Takes a forecast in; [`Taken::Nothing`] when it is older than the one held (stale:
    /// counted and dropped, nothing to score), unless the one held was replayed (the
    /// replay ran ahead of the consumer: the older one replaces it).
    fn on_forecast(
        &mut self,
        subject: &str,
        payload: &[u8],
        _redelivered: bool,
    ) -> Result<Taken, Reject> {
        let forecast: Forecast = wire::decode(payload)?;
        let profile = check_forecast(&self.subjects, subject, &forecast)?;
        let state = self.state_of(&forecast.server, profile);
        if std::mem::take(&mut state.forecast_replayed) {
            state.forecast = None;
        }
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
            return Ok(Taken::Nothing);
        }
        let server = forecast.server.clone();
        state.forecast = Some(forecast);
        Ok(Taken::Score(server))
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

/// The `Nats-Msg-Id` of a risk score: what it was computed from (see the module doc).
fn risk_msg_id(risk: &RiskScore) -> String {
    match risk.forecast_origin_s {
        Some(origin) => format!("{}-{}-{origin}", risk.server, risk.sample_ms),
        None => format!("{}-{}-none", risk.server, risk.sample_ms),
    }
}

impl RiskScorer {
    /// Forgets the servers of `partition` (claimed anew or lost).
    fn forget(&mut self, partition: u32) {
        for server in self.partitions.take(partition) {
            self.servers.remove(&server);
        }
        self.changed = true;
    }

    /// A claimed partition: its servers rebuilt from `history`, scored silently.
    fn rebuild(&mut self, partition: u32, history: &[async_nats::Message]) {
        self.forget(partition);
        for message in history {
            let subject = message.subject.as_str();
            let outcome = if self.subjects.is_forecast(subject) {
                self.on_forecast(subject, &message.payload, false)
            } else {
                self.on_sample(subject, &message.payload, false)
            };
            if let Ok(Taken::Score(server)) = outcome {
                self.score(&server);
                self.partitions.note(&server, Some(partition));
            }
            self.replayed.incr();
        }
    }
}

impl StreamHandler<Input> for RiskScorer {
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
                "the consumers ended (connection closed): the risk scorer stops"
            );
            ctx.stop();
        }
    }
}

impl RiskScorer {
    fn on_delivery(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.stage.counters().received();
        let message = &delivery.message;
        let subject = message.subject.as_str();
        let outcome = match delivery.kind {
            StreamKind::Forecasts => {
                self.on_forecast(subject, &message.payload, delivery.redelivered)
            }
            _ => self.on_sample(subject, &message.payload, delivery.redelivered),
        };
        let mut receipts = Vec::new();
        match outcome {
            Ok(Taken::Nothing) => self.stage.counters().accepted(),
            Ok(Taken::Score(server)) => {
                self.stage.counters().accepted();
                self.partitions.note(&server, delivery.partition);
                if let Some(risk) = self.score(&server) {
                    let id = risk_msg_id(&risk);
                    receipts.push(self.stage.publish_to_stream_once(
                        ctx,
                        self.subjects.risk(&server),
                        &risk,
                        id,
                    ));
                }
            }
            Err(reject) => {
                let reject = reject.or_server(self.subjects.server_of(subject));
                self.stage.reject(ctx, subject, reject);
            }
        }
        self.durable.ack_after(delivery, receipts);
    }
}

impl Handler<Drain> for RiskScorer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        stage::drain_durable(&self.durable, |scorer: &mut RiskScorer, ctx| {
            scorer.publish_summary(ctx)
        })
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
