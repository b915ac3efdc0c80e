//! Wire types and their codec: every message fleetcast puts on NATS.
//!
//! Each payload is MessagePack with **named fields** (a map, readable from any language),
//! carries the schema version in its field `v`, and travels with the header
//! `Content-Type: application/msgpack`. Timestamps are unix milliseconds (UTC) unless a
//! field's name says otherwise. `nats/SUBJECTS.md` documents the same types for consumers in
//! other languages; keep the two in step.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema version written into every message type but [`PredictJob`]; a reader refuses any
/// other.
pub const SCHEMA_VERSION: u16 = 1;

/// Schema version of [`PredictJob`]: 2 since a job carries only the metrics a server
/// reports, metric by metric, with NaN for steps not observed (version 1 carried all 14 metrics
/// step by step, gaps carried forward).
pub const PREDICT_JOB_VERSION: u16 = 2;

/// The `Content-Type` header value of every fleetcast message.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not MessagePack of the expected shape.
    #[error("undecodable payload: {0}")]
    Malformed(#[source] rmp_serde::decode::Error),
    /// The message is of a schema version this build does not speak.
    #[error("unsupported schema version {found} (this build speaks {expected})")]
    WrongVersion {
        /// The version the message carried.
        found: u16,
        /// The version this build reads for the type.
        expected: u16,
    },
}

impl DecodeError {
    /// Short machine-readable reason, used as the `kind` of a [`Rejection`].
    pub fn kind(&self) -> RejectKind {
        match self {
            DecodeError::Malformed(_) => RejectKind::Undecodable,
            DecodeError::WrongVersion { .. } => RejectKind::SchemaVersion,
        }
    }
}

/// A message type that travels on the bus.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The schema version this build writes and reads for the type.
    const VERSION: u16;
    /// The schema version this value carries.
    fn version(&self) -> u16;
}

macro_rules! wire_message {
    (@version) => { SCHEMA_VERSION };
    (@version $version:expr) => { $version };
    ($($ty:ty $(= $version:expr)?),* $(,)?) => {
        $(impl WireMessage for $ty {
            const VERSION: u16 = wire_message!(@version $($version)?);
            fn version(&self) -> u16 {
                self.v
            }
        })*
    };
}

/// Encodes a message as MessagePack with named fields.
pub fn encode<T: WireMessage>(message: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(message).expect("wire types always serialize")
}

/// Decodes a message and checks its schema version.
///
/// # Errors
/// [`DecodeError::Malformed`] for bytes of the wrong shape, [`DecodeError::WrongVersion`]
/// for a message of another schema version.
pub fn decode<T: WireMessage>(payload: &[u8]) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u16,
    }
    let message: Result<T, _> = rmp_serde::from_slice(payload);
    match message {
        Ok(message) if message.version() == T::VERSION => Ok(message),
        Ok(message) => Err(DecodeError::WrongVersion {
            found: message.version(),
            expected: T::VERSION,
        }),
        Err(error) => match rmp_serde::from_slice::<VersionOnly>(payload) {
            Ok(VersionOnly { v }) if v != T::VERSION => Err(DecodeError::WrongVersion {
                found: v,
                expected: T::VERSION,
            }),
            _ => Err(DecodeError::Malformed(error)),
        },
    }
}

/// Decodes any MessagePack payload into JSON, for `fleetcast tail`.
///
/// # Errors
/// When the bytes are not MessagePack.
pub fn to_json(payload: &[u8]) -> Result<serde_json::Value, rmp_serde::decode::Error> {
    rmp_serde::from_slice(payload)
}

/// One server's metrics at one instant, on `metrics.<server>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Schema version.
    pub v: u16,
    /// Server name (letters, digits, `-`, `_`); must equal the subject's last token.
    pub server: String,
    /// When the values were measured, unix ms UTC.
    pub ts_ms: i64,
    /// The server's profile; inferred from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Metric name → value, in the metric's unit; any subset of the 14 metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// What was wrong with a rejected input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// Not MessagePack of the expected shape.
    Undecodable,
    /// A schema version this build does not speak.
    SchemaVersion,
    /// Missing or malformed server name, or one that differs from the subject.
    BadServer,
    /// A metric name outside the catalog.
    UnknownMetric,
    /// NaN or infinity.
    NonFinite,
    /// Outside the metric's valid range.
    OutOfRange,
    /// Too far in the future.
    FutureTimestamp,
    /// Older than a step already closed for this server.
    OutOfOrder,
    /// A sample with no metrics.
    Empty,
    /// A profile name outside the vocabulary.
    UnknownProfile,
    /// A forecast or job whose contents are unusable (NaN, wrong shape).
    BadContent,
}

impl RejectKind {
    /// Every kind, in declaration order.
    pub const ALL: [RejectKind; 11] = [
        RejectKind::Undecodable,
        RejectKind::SchemaVersion,
        RejectKind::BadServer,
        RejectKind::UnknownMetric,
        RejectKind::NonFinite,
        RejectKind::OutOfRange,
        RejectKind::FutureTimestamp,
        RejectKind::OutOfOrder,
        RejectKind::Empty,
        RejectKind::UnknownProfile,
        RejectKind::BadContent,
    ];

    /// The snake_case name, as on the wire and in counter names (`rejected.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            RejectKind::Undecodable => "undecodable",
            RejectKind::SchemaVersion => "schema_version",
            RejectKind::BadServer => "bad_server",
            RejectKind::UnknownMetric => "unknown_metric",
            RejectKind::NonFinite => "non_finite",
            RejectKind::OutOfRange => "out_of_range",
            RejectKind::FutureTimestamp => "future_timestamp",
            RejectKind::OutOfOrder => "out_of_order",
            RejectKind::Empty => "empty",
            RejectKind::UnknownProfile => "unknown_profile",
            RejectKind::BadContent => "bad_content",
        }
    }

    /// The kind named `name` (snake_case), if any.
    pub fn from_name(name: &str) -> Option<RejectKind> {
        RejectKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Its position in [`RejectKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An input a stage refused, on `rejected.<stage>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Schema version.
    pub v: u16,
    /// The stage that refused it (`window_keeper`, `predictor`, ...).
    pub stage: String,
    /// The subject the input arrived on.
    pub subject: String,
    /// The server, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// The reason in words, naming what is wrong.
    pub reason: String,
    /// When it was refused, unix ms.
    pub at_ms: i64,
}

/// A server's window ready to forecast, on `jobs.predict.<server>` (JetStream work queue).
/// Schema version [`PREDICT_JOB_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictJob {
    /// Schema version.
    pub v: u16,
    /// Server name.
    pub server: String,
    /// Server profile (wire name).
    pub profile: String,
    /// Start of the newest step in the window (the step that just closed, or the last gap step
    /// after it), unix seconds.
    pub last_step_s: i64,
    /// Step length in seconds.
    pub step_seconds: u32,
    /// Number of steps per metric (the model's context length).
    pub steps: u32,
    /// The metrics in `values`, in catalog order: those with enough observed steps to
    /// forecast.
    pub metrics: Vec<String>,
    /// Values, metric-major: `values[i * steps + step]` is `metrics[i]` at `step`, oldest step
    /// first; NaN where the step was not observed (a gap, or before the server's history
    /// began).
    pub values: Vec<f32>,
    /// How many of the steps had no sample at all.
    pub gap_steps: u32,
}

/// p10/p50/p90 of one metric over the horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSeries {
    /// 10th percentile per step.
    pub p10: Vec<f32>,
    /// Median per step.
    pub p50: Vec<f32>,
    /// 90th percentile per step.
    pub p90: Vec<f32>,
    /// Observed steps of the metric in the context the forecast came from (fewer than the
    /// context length for a new server or after gaps: expect wider intervals).
    #[serde(default)]
    pub observed_steps: u32,
}

/// One input variable's weight in the model's encoder variable selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Variable name (a metric or a calendar feature).
    pub variable: String,
    /// Weight, 0–1 (weights of all variables sum to 1).
    pub weight: f32,
}

/// Where the model's attention went over the past window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionSummary {
    /// Share of attention on the most recent quarter of the window.
    pub recent_share: f32,
    /// Share on the oldest quarter.
    pub oldest_share: f32,
    /// The past steps with the most attention, as hours before the forecast origin.
    pub top_hours_ago: Vec<f32>,
}

/// One server's forecast, on `forecasts.<server>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Schema version.
    pub v: u16,
    /// Server name.
    pub server: String,
    /// Server profile.
    pub profile: String,
    /// Model name.
    pub model: String,
    /// Model version.
    pub model_version: String,
    /// When the forecast was made, unix ms.
    pub issued_ms: i64,
    /// Start of the last observed step, unix seconds.
    pub origin_s: i64,
    /// Step length in seconds.
    pub step_seconds: u32,
    /// Start of each forecast step, unix seconds.
    pub step_s: Vec<i64>,
    /// Metric name → quantiles per step, for the metrics the server reports that had enough
    /// history; a metric the server never reported is absent.
    pub metrics: BTreeMap<String, QuantileSeries>,
    /// The encoder variables with the largest selection weights, largest first.
    pub drivers: Vec<Driver>,
    /// Where the attention went.
    pub attention: AttentionSummary,
}

/// Whether a risk factor comes from the present or the forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorSource {
    /// The latest sample.
    Current,
    /// The latest forecast's p90.
    Predicted,
}

/// One contribution to a risk score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskFactor {
    /// Metric name (`cpu` means 100 − cpu_idle_pct).
    pub metric: String,
    /// Current or predicted.
    pub source: FactorSource,
    /// The value that was scored.
    pub value: f64,
    /// Points it added (before the 70/30 weighting).
    pub points: f64,
}

/// One server's risk, on `risk.<server>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskScore {
    /// Schema version.
    pub v: u16,
    /// Server name.
    pub server: String,
    /// Server profile.
    pub profile: String,
    /// When it was computed, unix ms.
    pub at_ms: i64,
    /// Time of the sample it used, unix ms.
    pub sample_ms: i64,
    /// Origin of the forecast it used, unix seconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_origin_s: Option<i64>,
    /// `clamp(0.7·current + 0.3·predicted, 0, 100)`.
    pub score: f64,
    /// Current points.
    pub current: f64,
    /// Predicted points.
    pub predicted: f64,
    /// Level on the one alert scale.
    pub level: String,
    /// What contributed.
    pub factors: Vec<RiskFactor>,
    /// Whether a forecast fed the predicted points: `used`, `missing` (none yet: predicted
    /// is 0) or `stale` (its steps all ended before the sample: ignored, predicted is 0).
    #[serde(default)]
    pub forecast_status: String,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    /// A new alert opened.
    Raise,
    /// An open alert went to a higher severity.
    Escalate,
    /// An open alert went to a lower (non-healthy) severity.
    Deescalate,
    /// The alert closed.
    Resolve,
}

/// An alert event, on `alerts.<severity>.<server>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Schema version.
    pub v: u16,
    /// Stable id of the alert across its events.
    pub id: String,
    /// Server name.
    pub server: String,
    /// Server profile.
    pub profile: String,
    /// `risk` for the server's overall risk alert, or a metric name for a predictive alert.
    pub subject: String,
    /// What happened.
    pub action: AlertAction,
    /// Severity after the event (`healthy` on resolve).
    pub severity: String,
    /// Severity before the event.
    pub previous: String,
    /// Risk score (risk alerts) or predicted value (metric alerts).
    pub value: f64,
    /// The reason in words and numbers.
    pub reason: String,
    /// When the alert opened, unix ms.
    pub opened_ms: i64,
    /// When this event happened, unix ms.
    pub at_ms: i64,
    /// Seconds since the alert opened.
    pub open_seconds: f64,
    /// Seconds spent at the previous severity.
    pub previous_seconds: f64,
}

/// Fleet-wide view, on `summary.fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// Schema version.
    pub v: u16,
    /// When it was computed, unix ms.
    pub at_ms: i64,
    /// Servers with a risk score.
    pub servers: u32,
    /// Mean per-server incident probability within 30 minutes.
    pub prob_30m: f64,
    /// Mean per-server incident probability within 8 hours.
    pub prob_8h: f64,
    /// `healthy`, `warning` or `critical`.
    pub fleet_health: String,
    /// Servers per alert level.
    pub counts: BTreeMap<String, u32>,
    /// The highest risks, highest first: (server, score).
    pub top_risks: Vec<(String, f64)>,
    /// Mean risk score.
    pub avg_risk: f64,
    /// Servers whose 30-minute incident probability exceeds 0.5.
    #[serde(default)]
    pub high_risk_servers: u32,
}

/// Request on `control.scenario`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRequest {
    /// Schema version.
    pub v: u16,
    /// `healthy`, `degrading`, `critical` or `cascade`; `status` asks without changing.
    pub scenario: String,
}

/// Reply on `control.scenario`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReply {
    /// Schema version.
    pub v: u16,
    /// Whether the request was applied.
    pub ok: bool,
    /// Error text when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Scenario before.
    pub old_scenario: String,
    /// Scenario now.
    pub new_scenario: String,
    /// Servers the scenario drives (all of them, cascade dependents included), at most the
    /// first 10,000 by name order of the fleet; `affected_total` counts them all.
    pub affected_servers: Vec<String>,
    /// How many servers the scenario drives (the list above may be cut short).
    #[serde(default)]
    pub affected_total: u32,
    /// Simulated step at which it took effect.
    pub step: u64,
    /// Fleet size.
    pub fleet_size: u32,
}

/// Request on `control.model.load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLoadRequest {
    /// Schema version.
    pub v: u16,
    /// Model directory, as seen by the workers.
    pub path: String,
}

/// Reply on `control.model.load` (one per worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLoadReply {
    /// Schema version.
    pub v: u16,
    /// Worker id.
    pub worker: String,
    /// Whether the new model now serves.
    pub ok: bool,
    /// The model serving after the request (name and version).
    pub serving: String,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Per-stage status, on `status.<stage>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStatus {
    /// Schema version.
    pub v: u16,
    /// Stage name.
    pub stage: String,
    /// When, unix ms.
    pub at_ms: i64,
    /// Counters (received, sent, rejected, errors, ...).
    pub counters: BTreeMap<String, u64>,
    /// Servers tracked.
    pub servers: u32,
    /// Servers whose window is full.
    pub servers_ready: u32,
    /// Fleet warm-up progress, 0–100 (mean over servers of filled/needed).
    pub warmup_pct: f64,
}

/// One stage instance's report: the reply of its micro service's `report` endpoint and, as
/// JSON, the `data` of that endpoint in `$SRV.STATS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Schema version.
    pub v: u16,
    /// Stage name (`risk_scorer`).
    pub stage: String,
    /// Instance name (`<host>-<pid>`, a predictor's worker id).
    pub instance: String,
    /// The deployment's subject prefix.
    pub prefix: String,
    /// When, unix ms.
    pub at_ms: i64,
    /// Counters: `received`, `accepted`, `rejected`, `rejected.<kind>`, `published`,
    /// `publish_errors`, `outbox_full`, `consumer_lag`, and the stage's own.
    pub counters: BTreeMap<String, u64>,
    /// What the stage says about itself (`model`, `scenario`, `warmup_pct`, ...).
    pub facts: BTreeMap<String, String>,
}

wire_message!(
    MetricSample,
    Rejection,
    PredictJob = PREDICT_JOB_VERSION,
    Forecast,
    RiskScore,
    AlertEvent,
    FleetSummary,
    ScenarioRequest,
    ScenarioReply,
    ModelLoadRequest,
    ModelLoadReply,
    StageStatus,
    StageReport,
);

/// The health of one scrape target or remote-write instance, on `status.<stage>` of the
/// input stages (`node_exporter`, `remote_write`): sent when it changes and every status
/// interval. A target that is down publishes no samples: this message says so instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// Schema version.
    pub v: u16,
    /// The input stage.
    pub stage: String,
    /// What is read: the URL scraped, or the remote-write `instance` label.
    pub target: String,
    /// The server its samples are published for, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Whether the last scrape (or Prometheus's `up`) succeeded.
    pub up: bool,
    /// Why it is down, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When, unix ms.
    pub at_ms: i64,
    /// The last successful scrape, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok_ms: Option<i64>,
    /// The metrics of the last sample published for it.
    #[serde(default)]
    pub metrics: Vec<String>,
}

wire_message!(TargetHealth);

/// Current wall-clock time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricSample {
        MetricSample {
            v: SCHEMA_VERSION,
            server: "ppdb001".into(),
            ts_ms: 1_700_000_000_000,
            profile: None,
            metrics: BTreeMap::from([("mem_used_pct".to_string(), 71.5)]),
        }
    }

    /// A message survives encode → decode, and its fields are named on the wire.
    #[test]
    fn round_trip_with_named_fields() {
        let bytes = encode(&sample());
        assert_eq!(decode::<MetricSample>(&bytes).unwrap(), sample());
        let json = to_json(&bytes).unwrap();
        assert_eq!(json["server"], "ppdb001");
        assert_eq!(json["metrics"]["mem_used_pct"], 71.5);
    }

    /// Another schema version is refused as such, garbage as undecodable.
    #[test]
    fn version_and_garbage_are_refused() {
        let mut old = sample();
        old.v = 9;
        let error = decode::<MetricSample>(&encode(&old)).unwrap_err();
        assert_eq!(error.kind(), RejectKind::SchemaVersion);
        assert!(error.to_string().contains('9'));
        let error = decode::<MetricSample>(b"\xc1garbage").unwrap_err();
        assert_eq!(error.kind(), RejectKind::Undecodable);
    }
}
