//! Settings: one TOML file (`fleetcast.toml`) with `FLEETCAST_<SECTION>__<KEY>` environment
//! overrides, read in two stages as ripgrep does: [`RawSettings`] (what the file and the
//! environment say, unknown keys refused), then [`RawSettings::validate`], which reports
//! every bad value at once, each naming its key, and turns names and times into types
//! ([`Scenario`](crate::sim::Scenario), [`Quantile`], an optional start time): the
//! [`Settings`] the program runs on.
//!
//! One file per group of sections: [`nats`] (`[nats]`, `[time]`, `[log]`), [`generator`],
//! [`forecasting`] (`[window_keeper]`, `[predictor]`), [`alerts`] (`[risk]`, `[alerts]`,
//! `[summary]`), [`gateway`], [`inputs`] (`[node_metrics]`, `[node_exporter]`, `[remote_write]`), [`partitions`]. `fleetcast.toml` at the repository root is the commented example; a test
//! parses it.

pub mod alerts;
pub mod forecasting;
pub mod gateway;
pub mod generator;
pub mod inputs;
pub mod nats;
pub mod partitions;

pub use alerts::{
    AlertSettings, MetricThresholds, Quantile, RawAlertSettings, RiskSettings, SummarySettings,
};
pub use forecasting::{PredictorSettings, WindowKeeperSettings};
pub use gateway::{GatewaySettings, RawGatewaySettings};
pub use generator::{GeneratorSettings, RawGeneratorSettings};
pub use inputs::{
    NodeExporterSettings, NodeMetricsSettings, RawNodeMetricsSettings, RawRemoteWriteSettings,
    RemoteWriteSettings,
};
pub use nats::{
    BusRole, BusTls, BusUser, DEFAULT_NATS_URL, LogSettings, NatsSettings, TimeSettings,
};
pub use partitions::PartitionSettings;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Every setting as the file and the environment say it (unknown keys refused).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    /// `[nats]`.
    pub nats: NatsSettings,
    /// `[time]`.
    pub time: TimeSettings,
    /// `[generator]`.
    pub generator: RawGeneratorSettings,
    /// `[window_keeper]`.
    pub window_keeper: WindowKeeperSettings,
    /// `[risk]`.
    pub risk: RiskSettings,
    /// `[alerts]`.
    pub alerts: RawAlertSettings,
    /// `[summary]`.
    pub summary: SummarySettings,
    /// `[predictor]`.
    pub predictor: PredictorSettings,
    /// `[gateway]`.
    pub gateway: RawGatewaySettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[node_metrics]`.
    pub node_metrics: RawNodeMetricsSettings,
    /// `[node_exporter]`.
    pub node_exporter: NodeExporterSettings,
    /// `[remote_write]`.
    pub remote_write: RawRemoteWriteSettings,
    /// `[partitions]`.
    pub partitions: PartitionSettings,
}

/// Every setting, validated. Sections mirror the actors.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    pub gateway: GatewaySettings,
    /// Logging.
    pub log: LogSettings,
    /// How node_exporter series become metrics (scraper and remote-write receiver).
    pub node_metrics: NodeMetricsSettings,
    /// The node_exporter scraper.
    pub node_exporter: NodeExporterSettings,
    /// The Prometheus remote-write receiver.
    pub remote_write: RemoteWriteSettings,
    /// Scale-out of the risk scorer and the alert router.
    pub partitions: PartitionSettings,
}

/// One bad value: its key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, `section.name`.
    pub key: String,
    /// What is wrong, naming the value.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The problems found so far; each section adds its own.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records `message` for `key` unless `ok` (the message is built only when needed).
    pub fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.add(key, message());
        }
    }

    /// Records `message` for `key`.
    pub fn add(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.to_string(),
            message,
        });
    }
}

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an environment variable could not be read or parsed.
    #[error("cannot read settings")]
    Read(#[from] config::ConfigError),
    /// Values parsed but are not valid; every problem is listed.
    #[error("invalid settings:\n  {}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
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

/// The settings source of the `FLEETCAST_<SECTION>__<KEY>` variables among `vars`.
fn environment(vars: impl Iterator<Item = (String, String)>) -> config::Environment {
    config::Environment::with_prefix("FLEETCAST")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(setting_overrides(vars)))
}

impl RawSettings {
    /// Checks every value, reporting all problems at once with their keys, and builds the
    /// typed settings.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] with one problem per bad key.
    pub fn validate(self) -> Result<Settings, SettingsError> {
        let mut problems = Problems::default();
        self.nats.check(&mut problems);
        self.time.check(&mut problems);
        self.window_keeper.check(&mut problems);
        self.risk.check(&mut problems);
        self.summary.check(&mut problems);
        self.predictor.check(&mut problems);
        self.log.check(&mut problems);
        self.node_exporter.check(&mut problems);
        self.partitions.check(&mut problems);
        let settings = Settings {
            node_metrics: self.node_metrics.validate(&mut problems),
            remote_write: self.remote_write.validate(&mut problems),
            gateway: self.gateway.validate(&mut problems),
            node_exporter: self.node_exporter,
            generator: self.generator.validate(&mut problems),
            alerts: self.alerts.validate(&mut problems),
            nats: self.nats,
            time: self.time,
            window_keeper: self.window_keeper,
            risk: self.risk,
            summary: self.summary,
            predictor: self.predictor,
            log: self.log,
            partitions: self.partitions,
        };
        if problems.0.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Invalid(problems.0))
        }
    }
}

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
        let raw: RawSettings = builder
            .add_source(environment(std::env::vars()))
            .build()?
            .try_deserialize()?;
        raw.validate()
    }

    /// As [`Settings::load`], with `overrides` (`("alerts.predictive_quantile", "p90")`,
    /// keys as in the file) applied over the file and the environment: the variants of
    /// `fleetcast evaluate alerts --variant`.
    ///
    /// # Errors
    /// As [`Settings::load`]; an unknown key is a [`SettingsError::Read`].
    pub fn load_with(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(environment(std::env::vars()));
        for (key, value) in overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        raw.validate()
    }

    /// Parses settings from TOML text (no environment), then validates.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        let raw: RawSettings = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        raw.validate()
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
        let text = include_str!("../../fleetcast.toml");
        let settings = Settings::from_toml(text).expect("fleetcast.toml is valid");
        assert_eq!(settings.time.step_seconds, 300);
        assert_eq!(settings.generator.servers, 90);
        assert_eq!(settings.predictor, PredictorSettings::default());
        assert_eq!(settings.gateway, GatewaySettings::default());
    }

    /// Bad gateway values are reported with their keys; the address becomes a type.
    #[test]
    fn bad_gateway_values_name_their_keys() {
        let text = "[gateway]\nbind = \"localhost\"\napi_key = \"short\"\ncors_origins = [\"example.com\"]\nworkers = 0\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        for key in [
            "gateway.bind",
            "gateway.api_key",
            "gateway.cors_origins",
            "gateway.workers",
        ] {
            assert!(message.contains(key), "{key}: {message}");
        }
        let settings = Settings::from_toml("[gateway]\nbind = \"0.0.0.0:8001\"\n").unwrap();
        assert_eq!(settings.gateway.bind.port(), 8001);
    }

    /// Every bad value is reported at once, each with its key.
    #[test]
    fn bad_values_name_their_keys() {
        let text = "[generator]\nservers = 0\nscenario = \"chaos\"\nlabels_file = \"no/such/dir/l.json\"\n\
                    [time]\nstep_seconds = 7\n[window_keeper]\nforecast_every_steps = 0\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        assert!(
            message.contains("window_keeper.forecast_every_steps"),
            "{message}"
        );
        assert!(message.contains("generator.servers"), "{message}");
        assert!(message.contains("generator.labels_file"), "{message}");
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
        let settings = Settings::from_toml(include_str!("../../fleetcast.toml")).unwrap();
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

    /// Names and times become types: the scenario, the quantile, the optional start.
    #[test]
    fn names_and_times_become_types() {
        let text = "[generator]\nscenario = \"critical\"\nstart = \"2026-01-05T12:00:00+01:00\"\n\
                    [alerts]\npredictive_quantile = \"p90\"\n";
        let settings = Settings::from_toml(text).unwrap();
        assert_eq!(settings.generator.scenario, crate::sim::Scenario::Critical);
        assert_eq!(
            settings
                .generator
                .start
                .map(|start| start.timestamp_millis()),
            Some(1_767_610_800_000)
        );
        assert_eq!(settings.alerts.predictive_quantile, Quantile::P90);
        assert_eq!(Settings::default().generator.start, None);
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["generator"]["scenario"], "critical");
        assert_eq!(json["alerts"]["predictive_quantile"], "p90");
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
        let settings = Settings::from_toml(include_str!("../../fleetcast.toml")).unwrap();
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

    /// The input sections' names become types: the load window, the close-wait metric, the
    /// listen address; they serialise back to the file's words.
    #[test]
    fn input_names_become_types() {
        let text = "[node_metrics]\nload = \"load15\"\nclose_wait_metric = \"\"\n\
                    [remote_write]\nlisten = \"0.0.0.0:9301\"\n";
        let settings = Settings::from_toml(text).unwrap();
        assert_eq!(
            settings.node_metrics.load,
            crate::node_series::LoadWindow::Fifteen
        );
        assert_eq!(settings.node_metrics.close_wait_metric, None);
        assert_eq!(settings.remote_write.listen.port(), 9301);
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["node_metrics"]["load"], "load15");
        assert_eq!(json["node_metrics"]["close_wait_metric"], "");
        assert_eq!(json["remote_write"]["listen"], "0.0.0.0:9301");
    }

    /// Bus users come from the file and the environment (the password as
    /// `FLEETCAST_NATS__USERS__<ROLE>__PASSWORD`); a user without a password, a password
    /// without a user and an unknown role are refused with their keys; `config` prints no
    /// password.
    #[test]
    fn bus_users_from_file_and_environment() {
        let file = "[nats]\nserver_config = \"nats/auth.conf\"\n[nats.users.predictor]\nuser = \"predictor\"\n";
        let vars = [(
            "FLEETCAST_NATS__USERS__PREDICTOR__PASSWORD".to_string(),
            "s3cret".to_string(),
        )];
        let raw: RawSettings = config::Config::builder()
            .add_source(config::File::from_str(file, config::FileFormat::Toml))
            .add_source(environment(vars.into_iter()))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let settings = raw.validate().expect("valid");
        let user = settings
            .nats
            .user(BusRole::Predictor)
            .expect("a predictor user");
        assert_eq!(
            (user.user.as_str(), user.password.as_str()),
            ("predictor", "s3cret")
        );
        assert_eq!(settings.nats.user(BusRole::Gateway), None);
        let json = serde_json::to_string(&settings).unwrap();
        assert!(!json.contains("s3cret") && json.contains("***"), "{json}");

        let text = "[nats]\nserver_config = \"nowhere.conf\"\n[nats.users.predictor]\nuser = \"p\"\n\
                    [nats.users.gateway]\npassword = \"x\"\n[nats.users.root]\nuser = \"r\"\npassword = \"x\"\n\
                    [nats.tls]\nca_file = \"nowhere.pem\"\ncert_file = \"Cargo.toml\"\n";
        let message = Settings::from_toml(text).unwrap_err().to_string();
        for key in [
            "nats.tls.ca_file",
            "nats.tls.key_file",
            "nats.server_config",
            "nats.users.predictor.password",
            "nats.users.gateway.user",
            "nats.users.root",
        ] {
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    /// A misspelt key is refused, naming the key.
    #[test]
    fn unknown_keys_are_refused() {
        let error = Settings::from_toml("[generator]\nserverz = 3\n").unwrap_err();
        assert!(matches!(error, SettingsError::Read(_)), "{error}");
        let cause = std::error::Error::source(&error)
            .expect("the parser's error")
            .to_string();
        assert!(cause.contains("serverz"), "{cause}");
    }
}
