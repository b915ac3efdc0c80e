//! Settings: one TOML file (`fleetcast.toml`) with `FLEETCAST_<SECTION>__<KEY>` environment
//! overrides, read in two stages as ripgrep does: the raw values (what the file and the
//! environment say, unknown keys refused), then [`Settings::validate`], which reports every
//! bad value at once, each naming its key.
//!
//! `fleetcast.toml` at the repository root is the commented example; a test parses it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting, after parsing. Sections mirror the actors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Bus connection.
    pub nats: NatsSettings,
    /// Time resolution shared by every stage.
    pub time: TimeSettings,
    /// The synthetic fleet.
    pub generator: GeneratorSettings,
    /// The per-server windows.
    pub window_keeper: WindowKeeperSettings,
    /// The risk score.
    pub risk: RiskSettings,
    /// The one alert scale and the alert router's state machine.
    pub alerts: AlertSettings,
    /// The periodic fleet summary.
    pub summary: SummarySettings,
    /// The predictor workers.
    pub predictor: PredictorSettings,
    /// The HTTP gateway: API, push updates, `/metrics`, dashboard.
    pub gateway: crate::actors::gateway::GatewaySettings,
    /// Logging.
    pub log: LogSettings,
    /// How node_exporter series become metrics (scraper and remote-write receiver).
    pub node_metrics: NodeMetricsSettings,
    /// The node_exporter scraper.
    pub node_exporter: NodeExporterSettings,
    /// The Prometheus remote-write receiver.
    pub remote_write: RemoteWriteSettings,
}

/// `[nats]`: where the bus is and what to do when it is not there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL.
    pub url: String,
    /// Prefix of every subject and stream name.
    pub prefix: String,
    /// Start a private nats-server when nothing answers at the default local URL.
    pub embedded: bool,
    /// JetStream storage folder of the private server.
    pub data_dir: PathBuf,
    /// nats-server binary; empty means `.tools/bin/nats-server`, then `PATH`, then
    /// `/usr/sbin/nats-server`.
    pub server_bin: String,
    /// Messages a subscription may buffer before the client drops (slow consumer).
    pub subscription_capacity: usize,
    /// Replicas of each JetStream stream: 1 on a single server, 3 on a three-node cluster.
    pub stream_replicas: usize,
}

/// `[time]`: the model's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeSettings {
    /// Length of one step in seconds (the model's resolution).
    pub step_seconds: u32,
}

/// `[generator]`: the synthetic fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorSettings {
    /// Run the generator inside `fleetcast up`.
    pub enabled: bool,
    /// Fleet size, 1–100,000.
    pub servers: u32,
    /// Random seed: the same seed gives the same fleet and series.
    pub seed: u64,
    /// Wall-clock milliseconds per simulated step (5,000 = one 5-minute step every 5 s).
    pub step_interval_ms: u64,
    /// Hours of history to publish as fast as the bus takes it before going live.
    pub backfill_hours: u32,
    /// Scenario at start: healthy, natural, degrading, critical or cascade.
    pub scenario: String,
    /// Share of servers that are problem children, 0.08–0.12.
    pub problem_child_share: f64,
    /// Simulated start time (RFC 3339); empty means now minus the backfill, on a step
    /// boundary.
    pub start: String,
}

/// `[window_keeper]`: the per-server windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowKeeperSettings {
    /// Steps kept per server (the model's context length).
    pub context_steps: u32,
    /// Observed steps a metric needs before it is sent to be forecast (a new server's first
    /// forecast comes this many steps after its first sample); at least the model's
    /// `min_observed_steps`.
    pub min_observed_steps: u32,
    /// Samples stamped more than this many seconds ahead of the later of the wall clock and
    /// the end of the newest step accepted from any server are rejected.
    pub max_future_seconds: u64,
    /// Seconds between status messages (warm-up progress).
    pub status_interval_seconds: u64,
    /// Publish a predict job when a full window's step closes.
    pub publish_jobs: bool,
    /// Rebuild the windows from the JetStream metrics stream at start, before going live.
    pub rebuild_on_start: bool,
}

/// `[risk]`: how the risk scorer blends the present and the forecast (catalog §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// Minutes of forecast whose p90 is averaged into the predicted state (the original's
    /// 30 minutes = 6 steps of 300 s).
    pub predicted_window_minutes: u32,
    /// Weight of the current points (the original's 0.7).
    pub current_weight: f64,
    /// Weight of the predicted points (the original's 0.3).
    pub predicted_weight: f64,
    /// Standard deviations above a profile's baseline mean (catalog §2) where its CPU,
    /// iowait, swap and load tiers start; 0 keeps the original's tables for every profile.
    pub profile_normal_sigmas: f64,
}

/// `[alerts]`: the one alert scale, the alert router's hysteresis and dwell, and the
/// predictive per-metric thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Lowest risk score that is `watch`.
    pub watch: f64,
    /// Lowest risk score that is `warning`.
    pub warning: f64,
    /// Lowest risk score that is `critical`.
    pub critical: f64,
    /// To go down from a level, the value must fall this far below that level's threshold.
    pub hysteresis_points: f64,
    /// Seconds (message time) the value must stay below a level's threshold minus the
    /// hysteresis before the alert steps down from it or resolves.
    pub min_dwell_seconds: u64,
    /// Seconds (message time) the value must stay at or above a higher level's threshold
    /// before the alert rises to it; 0 rises on the first message.
    pub raise_after_seconds: u64,
    /// Forecast steps a predictive metric alert looks at (the original's 12 = 1 hour).
    pub predictive_steps: u32,
    /// Quantile the predictive metric alerts test: `p10`, `p50` (the original's) or `p90`.
    pub predictive_quantile: String,
    /// Standard deviations above a profile's baseline mean where its predictive metric
    /// thresholds start (the warning value moves there when the profile's normal is above
    /// it); 0 keeps the same thresholds for every profile.
    pub profile_normal_sigmas: f64,
    /// Predictive metric thresholds: metric name → warning and critical values. Giving this
    /// table replaces the whole default set.
    pub metrics: std::collections::BTreeMap<String, MetricThresholds>,
}

/// The warning and critical values of one predictive metric alert.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricThresholds {
    /// Value from which the forecast raises a warning.
    pub warning: f64,
    /// Value from which it is critical.
    pub critical: f64,
}

/// `[summary]`: the fleet summary on `summary.fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummarySettings {
    /// Wall-clock seconds between summaries (one is sent only when something changed).
    pub interval_seconds: u64,
    /// How many of the highest risks the summary lists.
    pub top: u32,
}

/// `[predictor]`: the forecasting workers (ONNX Runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorSettings {
    /// Model directory (`model.onnx` + `model.json`) loaded at start.
    pub model_dir: PathBuf,
    /// `libonnxruntime.so`; empty means `ORT_DYLIB_PATH`, then `.tools/lib/libonnxruntime.so`
    /// under the current directory, then under the crate's directory.
    pub ort_library: String,
    /// Most jobs forecast in one ONNX run; bounds the runtime's activation memory.
    pub max_batch: usize,
    /// Longest a job waits for its batch to fill, in milliseconds.
    pub max_wait_ms: u64,
    /// ONNX Runtime threads inside one operator.
    pub intra_threads: usize,
    /// Predictor workers in one process, each with its own ONNX Runtime session (sharing the
    /// work like separate processes do).
    pub workers: usize,
    /// This worker's name in model-load replies and logs; empty means `<hostname>-<pid>`.
    pub worker_id: String,
    /// Seconds a job may stay unacknowledged before JetStream hands it to another worker.
    pub ack_wait_seconds: u64,
    /// Jobs handed out but not yet acknowledged, across all workers (the shared consumer's
    /// `max_ack_pending`).
    pub max_ack_pending: i64,
}

/// `[log]`: what the logs say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter, e.g. `info` or `fleetcast=debug`.
    pub level: String,
}

/// `[node_metrics]`: how node_exporter series become fleetcast metrics, for the scraper and
/// the remote-write receiver alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeMetricsSettings {
    /// Mount point whose filesystem is `disk_usage_pct`.
    pub mountpoint: String,
    /// Load average published as `load_average`: `load1`, `load5` or `load15`.
    pub load: String,
    /// Network devices left out of `net_in_mb_s` and `net_out_mb_s`.
    pub exclude_devices: Vec<String>,
    /// The metric that carries the host's CLOSE_WAIT socket count (node_exporter's tcpstat
    /// collector does not tell front from back): `front_close_wait`, `back_close_wait`, or
    /// empty for none.
    pub close_wait_metric: String,
    /// Label (on a target or on remote-written series) whose value is the server name.
    pub name_label: String,
}

/// `[node_exporter]`: the scraper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeExporterSettings {
    /// Run the scraper inside `fleetcast up`.
    pub enabled: bool,
    /// Static targets, `host:port`.
    pub targets: Vec<String>,
    /// File-based discovery: JSON files in Prometheus's `file_sd` format, re-read on change.
    pub files: Vec<PathBuf>,
    /// Seconds between scrapes of a target.
    pub interval_seconds: u64,
    /// Seconds a scrape may take.
    pub timeout_seconds: u64,
    /// HTTP path of the metrics page.
    pub metrics_path: String,
    /// Scrapes in flight at once.
    pub concurrency: usize,
    /// Seconds between repeats of every target's health on `status.node_exporter` (a change
    /// is sent at once).
    pub status_interval_seconds: u64,
}

/// `[remote_write]`: the Prometheus remote-write receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteSettings {
    /// Run the receiver inside `fleetcast up`.
    pub enabled: bool,
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Path of the write endpoint.
    pub path: String,
    /// Largest request body accepted, compressed and decompressed, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads.
    pub workers: usize,
}

/// The local URL that `up` may serve itself with a private nats-server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.into(),
            prefix: "fleetcast".into(),
            embedded: true,
            data_dir: PathBuf::from(".data/nats"),
            server_bin: String::new(),
            subscription_capacity: 1 << 20,
            stream_replicas: 1,
        }
    }
}

impl Default for TimeSettings {
    fn default() -> Self {
        Self { step_seconds: 300 }
    }
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            servers: 90,
            seed: 42,
            step_interval_ms: 5_000,
            backfill_hours: 25,
            scenario: "healthy".into(),
            problem_child_share: 0.10,
            start: String::new(),
        }
    }
}

impl Default for WindowKeeperSettings {
    fn default() -> Self {
        Self {
            context_steps: 288,
            min_observed_steps: 24,
            max_future_seconds: 600,
            status_interval_seconds: 10,
            publish_jobs: true,
            rebuild_on_start: true,
        }
    }
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            predicted_window_minutes: 30,
            current_weight: 0.7,
            predicted_weight: 0.3,
            profile_normal_sigmas: 2.5,
        }
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        let thresholds = |warning, critical| MetricThresholds { warning, critical };
        Self {
            watch: 20.0,
            warning: 40.0,
            critical: 70.0,
            hysteresis_points: 5.0,
            min_dwell_seconds: 900,
            raise_after_seconds: 300,
            predictive_steps: 12,
            predictive_quantile: "p50".into(),
            profile_normal_sigmas: 2.5,
            // Catalog §5 "Alerts": (critical, warning) per metric.
            metrics: std::collections::BTreeMap::from([
                ("cpu_user_pct".to_string(), thresholds(85.0, 95.0)),
                ("mem_used_pct".to_string(), thresholds(90.0, 98.0)),
                ("cpu_iowait_pct".to_string(), thresholds(20.0, 30.0)),
                ("swap_used_pct".to_string(), thresholds(25.0, 50.0)),
                ("disk_usage_pct".to_string(), thresholds(85.0, 95.0)),
            ]),
        }
    }
}

impl AlertSettings {
    /// The one alert scale these settings define.
    pub fn scale(&self) -> crate::levels::Scale {
        crate::levels::Scale {
            watch: self.watch,
            warning: self.warning,
            critical: self.critical,
        }
    }
}

impl Default for SummarySettings {
    fn default() -> Self {
        Self {
            interval_seconds: 10,
            top: 10,
        }
    }
}

impl Default for PredictorSettings {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/tft-v3"),
            ort_library: String::new(),
            max_batch: 32,
            max_wait_ms: 50,
            intra_threads: 1,
            workers: 2,
            worker_id: String::new(),
            ack_wait_seconds: 30,
            max_ack_pending: 1024,
        }
    }
}

impl Default for NodeMetricsSettings {
    fn default() -> Self {
        Self {
            mountpoint: "/".into(),
            load: "load1".into(),
            exclude_devices: vec!["lo".into()],
            close_wait_metric: "front_close_wait".into(),
            name_label: "server".into(),
        }
    }
}

impl NodeMetricsSettings {
    /// The derivation choices these settings make (validated values).
    pub fn node_config(&self) -> crate::actors::node_series::NodeConfig {
        crate::actors::node_series::NodeConfig {
            mountpoint: self.mountpoint.clone(),
            load: crate::actors::node_series::LoadWindow::from_setting(&self.load)
                .unwrap_or(crate::actors::node_series::LoadWindow::One),
            exclude_devices: self.exclude_devices.clone(),
            close_wait: crate::catalog::Metric::from_name(&self.close_wait_metric),
        }
    }
}

impl Default for NodeExporterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            targets: Vec::new(),
            files: Vec::new(),
            interval_seconds: 15,
            timeout_seconds: 10,
            metrics_path: "/metrics".into(),
            concurrency: 64,
            status_interval_seconds: 60,
        }
    }
}

impl Default for RemoteWriteSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9201".into(),
            path: "/api/v1/write".into(),
            max_body_bytes: 32 << 20,
            workers: 2,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an environment variable could not be read or parsed.
    #[error("cannot read settings: {0}")]
    Read(#[from] config::ConfigError),
    /// Values parsed but are not valid; every problem is listed.
    #[error("invalid settings:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// The environment variables that override settings: `FLEETCAST_<SECTION>__<KEY>`. Others
/// with the prefix but no `__` (`FLEETCAST_CONFIG`, the settings file's path; variables of
/// scripts and benches) are not settings and are left alone rather than refused as unknown.
fn setting_overrides(
    vars: impl Iterator<Item = (String, String)>,
) -> std::collections::HashMap<String, String> {
    vars.filter(|(name, _)| {
        name.strip_prefix("FLEETCAST_")
            .is_some_and(|rest| rest.contains("__"))
    })
    .collect()
}

/// The scenarios the generator knows: `healthy` holds every server healthy (diurnal load and
/// noise only), `natural` lets the original's Markov churn, incident ramps and cascades run
/// (what training data is made of), and the other three force trouble on top of `natural`.
pub const SCENARIOS: [&str; 5] = ["healthy", "natural", "degrading", "critical", "cascade"];

impl Settings {
    /// Reads `path` (when given; a missing file is an error) and `FLEETCAST_...` overrides
    /// (`FLEETCAST_GENERATOR__SERVERS=500`), then validates.
    ///
    /// # Errors
    /// [`SettingsError::Read`] for unreadable or unparsable input (unknown keys included),
    /// [`SettingsError::Invalid`] listing every invalid value.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let raw: Settings = builder
            .add_source(
                config::Environment::with_prefix("FLEETCAST")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(setting_overrides(std::env::vars()))),
            )
            .build()?
            .try_deserialize()?;
        raw.validate()
    }

    /// Parses settings from TOML text (no environment), then validates.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        let raw: Settings = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        raw.validate()
    }

    /// Checks every value, reporting all problems at once with their keys.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] with one line per bad key.
    pub fn validate(self) -> Result<Settings, SettingsError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, why: String| {
            if !ok {
                problems.push(format!("{key}: {why}"));
            }
        };
        let nats = &self.nats;
        check(
            nats.url.starts_with("nats://") || nats.url.starts_with("tls://"),
            "nats.url",
            format!("`{}` must start with nats:// or tls://", nats.url),
        );
        check(
            crate::catalog::is_valid_server_name(&nats.prefix),
            "nats.prefix",
            format!(
                "`{}` must be letters, digits, `-` or `_` (it is a subject token)",
                nats.prefix
            ),
        );
        check(
            nats.subscription_capacity >= 1024,
            "nats.subscription_capacity",
            format!(
                "{} is below the minimum of 1024",
                nats.subscription_capacity
            ),
        );
        check(
            (1..=5).contains(&nats.stream_replicas),
            "nats.stream_replicas",
            format!("{} is outside 1–5", nats.stream_replicas),
        );
        check(
            (60..=86_400).contains(&self.time.step_seconds) && 86_400 % self.time.step_seconds == 0,
            "time.step_seconds",
            format!(
                "{} must divide a day and lie in 60–86400",
                self.time.step_seconds
            ),
        );
        let generator = &self.generator;
        check(
            (1..=100_000).contains(&generator.servers),
            "generator.servers",
            format!("{} is outside 1–100000", generator.servers),
        );
        check(
            generator.step_interval_ms <= 3_600_000,
            "generator.step_interval_ms",
            format!("{} is above one hour", generator.step_interval_ms),
        );
        check(
            generator.backfill_hours <= 24 * 60,
            "generator.backfill_hours",
            format!("{} is above 60 days", generator.backfill_hours),
        );
        check(
            SCENARIOS.contains(&generator.scenario.as_str()),
            "generator.scenario",
            format!(
                "`{}` is not one of {}",
                generator.scenario,
                SCENARIOS.join(", ")
            ),
        );
        check(
            (0.0..=0.5).contains(&generator.problem_child_share),
            "generator.problem_child_share",
            format!("{} is outside 0–0.5", generator.problem_child_share),
        );
        check(
            generator.start.is_empty()
                || chrono::DateTime::parse_from_rfc3339(&generator.start).is_ok(),
            "generator.start",
            format!("`{}` is not an RFC 3339 time", generator.start),
        );
        let window = &self.window_keeper;
        check(
            (2..=10_000).contains(&window.context_steps),
            "window_keeper.context_steps",
            format!("{} is outside 2–10000", window.context_steps),
        );
        check(
            (1..=window.context_steps).contains(&window.min_observed_steps),
            "window_keeper.min_observed_steps",
            format!(
                "{} is outside 1–{} (the context)",
                window.min_observed_steps, window.context_steps
            ),
        );
        check(
            window.status_interval_seconds >= 1,
            "window_keeper.status_interval_seconds",
            "must be at least 1".into(),
        );
        let risk = &self.risk;
        check(
            (1..=1440).contains(&risk.predicted_window_minutes),
            "risk.predicted_window_minutes",
            format!("{} is outside 1–1440", risk.predicted_window_minutes),
        );
        for (key, weight) in [
            ("risk.current_weight", risk.current_weight),
            ("risk.predicted_weight", risk.predicted_weight),
        ] {
            check(
                (0.0..=1.0).contains(&weight),
                key,
                format!("{weight} is outside 0–1"),
            );
        }
        check(
            (risk.current_weight + risk.predicted_weight - 1.0).abs() < 1e-9,
            "risk.predicted_weight",
            format!(
                "risk.current_weight + risk.predicted_weight is {}, not 1",
                risk.current_weight + risk.predicted_weight
            ),
        );
        for (key, sigmas) in [
            ("risk.profile_normal_sigmas", risk.profile_normal_sigmas),
            (
                "alerts.profile_normal_sigmas",
                self.alerts.profile_normal_sigmas,
            ),
        ] {
            check(
                (0.0..=10.0).contains(&sigmas),
                key,
                format!("{sigmas} is outside 0–10"),
            );
        }
        let alerts = &self.alerts;
        check(
            0.0 < alerts.watch
                && alerts.watch < alerts.warning
                && alerts.warning < alerts.critical
                && alerts.critical <= 100.0,
            "alerts.watch",
            format!(
                "0 < watch ({}) < warning ({}) < critical ({}) <= 100 does not hold",
                alerts.watch, alerts.warning, alerts.critical
            ),
        );
        check(
            (0.0..=alerts.watch).contains(&alerts.hysteresis_points),
            "alerts.hysteresis_points",
            format!(
                "{} is outside 0–{} (alerts.watch)",
                alerts.hysteresis_points, alerts.watch
            ),
        );
        check(
            alerts.min_dwell_seconds <= 7 * 86_400,
            "alerts.min_dwell_seconds",
            format!("{} is above a week", alerts.min_dwell_seconds),
        );
        check(
            alerts.raise_after_seconds <= 86_400,
            "alerts.raise_after_seconds",
            format!("{} is above a day", alerts.raise_after_seconds),
        );
        check(
            (1..=10_000).contains(&alerts.predictive_steps),
            "alerts.predictive_steps",
            format!("{} is outside 1–10000", alerts.predictive_steps),
        );
        check(
            ["p10", "p50", "p90"].contains(&alerts.predictive_quantile.as_str()),
            "alerts.predictive_quantile",
            format!(
                "`{}` is not one of p10, p50, p90",
                alerts.predictive_quantile
            ),
        );
        for (metric, thresholds) in &alerts.metrics {
            let key = format!("alerts.metrics.{metric}");
            check(
                crate::catalog::Metric::from_name(metric).is_some(),
                &key,
                format!("`{metric}` is not a metric"),
            );
            check(
                thresholds.warning.is_finite()
                    && thresholds.critical.is_finite()
                    && thresholds.warning < thresholds.critical,
                &key,
                format!(
                    "warning ({}) must be below critical ({})",
                    thresholds.warning, thresholds.critical
                ),
            );
        }
        check(
            self.summary.interval_seconds >= 1,
            "summary.interval_seconds",
            "must be at least 1".into(),
        );
        check(
            (1..=1000).contains(&self.summary.top),
            "summary.top",
            format!("{} is outside 1–1000", self.summary.top),
        );
        let predictor = &self.predictor;
        check(
            !predictor.model_dir.as_os_str().is_empty(),
            "predictor.model_dir",
            "must name a model directory".into(),
        );
        check(
            (1..=1024).contains(&predictor.max_batch),
            "predictor.max_batch",
            format!("{} is outside 1–1024", predictor.max_batch),
        );
        check(
            predictor.max_wait_ms <= 60_000,
            "predictor.max_wait_ms",
            format!("{} is above one minute", predictor.max_wait_ms),
        );
        check(
            (1..=256).contains(&predictor.intra_threads),
            "predictor.intra_threads",
            format!("{} is outside 1–256", predictor.intra_threads),
        );
        check(
            (1..=64).contains(&predictor.workers),
            "predictor.workers",
            format!("{} is outside 1–64", predictor.workers),
        );
        check(
            predictor.worker_id.is_empty()
                || crate::catalog::is_valid_server_name(&predictor.worker_id),
            "predictor.worker_id",
            format!(
                "`{}` must be letters, digits, `-` or `_`",
                predictor.worker_id
            ),
        );
        check(
            (1..=3600).contains(&predictor.ack_wait_seconds),
            "predictor.ack_wait_seconds",
            format!("{} is outside 1–3600", predictor.ack_wait_seconds),
        );
        check(
            predictor.max_ack_pending >= 2 * predictor.max_batch as i64,
            "predictor.max_ack_pending",
            format!(
                "{} is below twice predictor.max_batch ({})",
                predictor.max_ack_pending, predictor.max_batch
            ),
        );
        self.validate_inputs(&mut check);
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            format!("`{}` is not a tracing filter", self.log.level),
        );
        self.gateway.check(&mut problems);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }

    /// Checks `[node_metrics]`, `[node_exporter]` and `[remote_write]`.
    fn validate_inputs(&self, check: &mut impl FnMut(bool, &str, String)) {
        let node = &self.node_metrics;
        check(
            node.mountpoint.starts_with('/'),
            "node_metrics.mountpoint",
            format!("`{}` is not an absolute path", node.mountpoint),
        );
        check(
            crate::actors::node_series::LoadWindow::from_setting(&node.load).is_some(),
            "node_metrics.load",
            format!("`{}` is not one of load1, load5, load15", node.load),
        );
        check(
            ["front_close_wait", "back_close_wait", ""].contains(&node.close_wait_metric.as_str()),
            "node_metrics.close_wait_metric",
            format!(
                "`{}` is not one of front_close_wait, back_close_wait or empty",
                node.close_wait_metric
            ),
        );
        check(
            !node.name_label.is_empty(),
            "node_metrics.name_label",
            "must name a label".into(),
        );
        let scraper = &self.node_exporter;
        for target in &scraper.targets {
            check(
                crate::actors::node_exporter::targets::is_valid_target(target),
                "node_exporter.targets",
                format!("`{target}` is not host:port"),
            );
        }
        check(
            (1..=3600).contains(&scraper.interval_seconds),
            "node_exporter.interval_seconds",
            format!("{} is outside 1–3600", scraper.interval_seconds),
        );
        check(
            scraper.timeout_seconds >= 1 && scraper.timeout_seconds <= scraper.interval_seconds,
            "node_exporter.timeout_seconds",
            format!(
                "{} is outside 1–{} (node_exporter.interval_seconds)",
                scraper.timeout_seconds, scraper.interval_seconds
            ),
        );
        check(
            scraper.metrics_path.starts_with('/'),
            "node_exporter.metrics_path",
            format!("`{}` must start with /", scraper.metrics_path),
        );
        check(
            (1..=10_000).contains(&scraper.concurrency),
            "node_exporter.concurrency",
            format!("{} is outside 1–10000", scraper.concurrency),
        );
        check(
            scraper.status_interval_seconds >= 1,
            "node_exporter.status_interval_seconds",
            "must be at least 1".into(),
        );
        let receiver = &self.remote_write;
        check(
            receiver.listen.parse::<std::net::SocketAddr>().is_ok(),
            "remote_write.listen",
            format!("`{}` is not an address:port", receiver.listen),
        );
        check(
            receiver.path.starts_with('/'),
            "remote_write.path",
            format!("`{}` must start with /", receiver.path),
        );
        check(
            (1024..=1 << 30).contains(&receiver.max_body_bytes),
            "remote_write.max_body_bytes",
            format!("{} is outside 1024–1073741824", receiver.max_body_bytes),
        );
        check(
            (1..=64).contains(&receiver.workers),
            "remote_write.workers",
            format!("{} is outside 1–64", receiver.workers),
        );
    }

    /// The subject builder for this deployment's prefix.
    pub fn subjects(&self) -> crate::subjects::Subjects {
        crate::subjects::Subjects::new(&self.nats.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed example file parses and validates.
    #[test]
    fn example_file_parses() {
        let text = include_str!("../fleetcast.toml");
        let settings = Settings::from_toml(text).expect("fleetcast.toml is valid");
        assert_eq!(settings.time.step_seconds, 300);
        assert_eq!(settings.generator.servers, 90);
        assert_eq!(settings.predictor, PredictorSettings::default());
        assert_eq!(
            settings.gateway,
            crate::actors::gateway::GatewaySettings::default()
        );
    }

    /// Every bad value is reported at once, each with its key.
    #[test]
    fn bad_values_name_their_keys() {
        let text = "[generator]\nservers = 0\nscenario = \"chaos\"\n[time]\nstep_seconds = 7\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        assert!(message.contains("generator.servers"), "{message}");
        assert!(message.contains("generator.scenario"), "{message}");
        assert!(message.contains("time.step_seconds"), "{message}");
    }

    /// Bad risk, alert and summary values are reported with their keys.
    #[test]
    fn risk_and_alert_values_name_their_keys() {
        let text = "[risk]\ncurrent_weight = 0.9\n[alerts]\nwatch = 50\npredictive_quantile = \"p99\"\n\
                    [alerts.metrics]\nmem_used_pct = { warning = 99, critical = 90 }\nfoo = { warning = 1, critical = 2 }\n\
                    [summary]\ninterval_seconds = 0\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        for key in [
            "risk.predicted_weight",
            "alerts.watch",
            "alerts.predictive_quantile",
            "alerts.metrics.mem_used_pct",
            "alerts.metrics.foo",
            "summary.interval_seconds",
        ] {
            assert!(message.contains(key), "{key} missing in {message}");
        }
    }

    /// The example file's alert section is the original API's scale and catalog thresholds.
    #[test]
    fn example_alert_section_matches_the_defaults() {
        let settings = Settings::from_toml(include_str!("../fleetcast.toml")).unwrap();
        assert_eq!(settings.alerts, AlertSettings::default());
        assert_eq!(settings.risk, RiskSettings::default());
        assert_eq!(settings.summary, SummarySettings::default());
    }

    /// Bad predictor values are refused with their keys.
    #[test]
    fn bad_predictor_values_name_their_keys() {
        let text = "[predictor]\nmax_batch = 0\nintra_threads = 0\nworkers = 0\nworker_id = \"a.b\"\nack_wait_seconds = 0\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        for key in [
            "predictor.max_batch",
            "predictor.intra_threads",
            "predictor.workers",
            "predictor.worker_id",
            "predictor.ack_wait_seconds",
        ] {
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    /// Only `FLEETCAST_<SECTION>__<KEY>` variables are overrides; `FLEETCAST_CONFIG` is not.
    #[test]
    fn only_section_key_variables_override() {
        let vars = [
            ("FLEETCAST_GENERATOR__SERVERS", "5"),
            ("FLEETCAST_CONFIG", "x.toml"),
            ("PATH", "/bin"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string()));
        let overrides = setting_overrides(vars.into_iter());
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides["FLEETCAST_GENERATOR__SERVERS"], "5");
    }

    /// Bad input-stage values are refused with their keys; the example's are the defaults.
    #[test]
    fn bad_input_values_name_their_keys() {
        let settings = Settings::from_toml(include_str!("../fleetcast.toml")).unwrap();
        assert_eq!(settings.node_metrics, NodeMetricsSettings::default());
        assert_eq!(settings.node_exporter, NodeExporterSettings::default());
        assert_eq!(settings.remote_write, RemoteWriteSettings::default());
        let text = "[node_metrics]\nload = \"load2\"\nclose_wait_metric = \"cw\"\nmountpoint = \"data\"\n\
                    [node_exporter]\ntargets = [\"http://a:1/x\"]\ntimeout_seconds = 20\n\
                    [remote_write]\nlisten = \"nowhere\"\npath = \"write\"\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        for key in [
            "node_metrics.load",
            "node_metrics.close_wait_metric",
            "node_metrics.mountpoint",
            "node_exporter.targets",
            "node_exporter.timeout_seconds",
            "remote_write.listen",
            "remote_write.path",
        ] {
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    /// A misspelt key is refused, naming the key.
    #[test]
    fn unknown_keys_are_refused() {
        let message = Settings::from_toml("[generator]\nserverz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("serverz"), "{message}");
    }
}
