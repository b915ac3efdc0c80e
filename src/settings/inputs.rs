//! `[node_metrics]`, `[node_exporter]` and `[remote_write]`: the input actors that read the
//! monitoring stacks people already run. The load window and the close-wait metric become a
//! [`LoadWindow`] and an optional [`Metric`], the listen address a [`SocketAddr`].

use super::Problems;
use crate::catalog::Metric;
use crate::node_series::{LoadWindow, NodeConfig};
use serde::{Deserialize, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[node_metrics]` as the file and the environment say it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNodeMetricsSettings {
    /// See [`NodeMetricsSettings::mountpoint`].
    pub mountpoint: String,
    /// `load1`, `load5` or `load15`.
    pub load: String,
    /// See [`NodeMetricsSettings::exclude_devices`].
    pub exclude_devices: Vec<String>,
    /// `front_close_wait`, `back_close_wait`, or empty for none.
    pub close_wait_metric: String,
    /// See [`NodeMetricsSettings::name_label`].
    pub name_label: String,
}

impl Default for RawNodeMetricsSettings {
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

/// `[node_metrics]`, validated: how node_exporter series become fleetcast metrics, for the
/// scraper and the remote-write receiver alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeMetricsSettings {
    /// Mount point whose filesystem is `disk_usage_pct`.
    pub mountpoint: String,
    /// Load average published as `load_average`.
    #[serde(serialize_with = "load_name")]
    pub load: LoadWindow,
    /// Network devices left out of `net_in_mb_s` and `net_out_mb_s`.
    pub exclude_devices: Vec<String>,
    /// The metric that carries the host's CLOSE_WAIT socket count (node_exporter's tcpstat
    /// collector does not tell front from back), or none.
    #[serde(serialize_with = "metric_name")]
    pub close_wait_metric: Option<Metric>,
    /// Label (on a target or on remote-written series) whose value is the server name.
    pub name_label: String,
}

impl Default for NodeMetricsSettings {
    fn default() -> Self {
        RawNodeMetricsSettings::default().validate(&mut Problems::default())
    }
}

fn load_name<S: Serializer>(load: &LoadWindow, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(load.setting_name())
}

fn metric_name<S: Serializer>(metric: &Option<Metric>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(metric.map_or("", Metric::name))
}

impl RawNodeMetricsSettings {
    pub(super) fn validate(self, problems: &mut Problems) -> NodeMetricsSettings {
        problems.check(
            self.mountpoint.starts_with('/'),
            "node_metrics.mountpoint",
            || format!("`{}` is not an absolute path", self.mountpoint),
        );
        let load = LoadWindow::from_setting(&self.load).unwrap_or_else(|| {
            problems.add(
                "node_metrics.load",
                format!("`{}` is not one of load1, load5, load15", self.load),
            );
            LoadWindow::One
        });
        let close_wait_metric = match self.close_wait_metric.as_str() {
            "" => None,
            "front_close_wait" => Some(Metric::FrontCloseWait),
            "back_close_wait" => Some(Metric::BackCloseWait),
            other => {
                problems.add(
                    "node_metrics.close_wait_metric",
                    format!("`{other}` is not one of front_close_wait, back_close_wait or empty"),
                );
                None
            }
        };
        problems.check(
            !self.name_label.is_empty(),
            "node_metrics.name_label",
            || "must name a label".into(),
        );
        NodeMetricsSettings {
            mountpoint: self.mountpoint,
            load,
            exclude_devices: self.exclude_devices,
            close_wait_metric,
            name_label: self.name_label,
        }
    }
}

impl NodeMetricsSettings {
    /// The derivation choices these settings make.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            mountpoint: self.mountpoint.clone(),
            load: self.load,
            exclude_devices: self.exclude_devices.clone(),
            close_wait: self.close_wait_metric,
        }
    }
}

/// `[node_exporter]`: the scraper. What the file says is what the program uses; `check`
/// reports bad values.
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

impl NodeExporterSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        for target in &self.targets {
            problems.check(
                crate::actors::node_exporter::targets::is_valid_target(target),
                "node_exporter.targets",
                || format!("`{target}` is not host:port"),
            );
        }
        problems.check(
            (1..=3600).contains(&self.interval_seconds),
            "node_exporter.interval_seconds",
            || format!("{} is outside 1–3600", self.interval_seconds),
        );
        problems.check(
            self.timeout_seconds >= 1 && self.timeout_seconds <= self.interval_seconds,
            "node_exporter.timeout_seconds",
            || {
                format!(
                    "{} is outside 1–{} (node_exporter.interval_seconds)",
                    self.timeout_seconds, self.interval_seconds
                )
            },
        );
        problems.check(
            self.metrics_path.starts_with('/'),
            "node_exporter.metrics_path",
            || format!("`{}` must start with /", self.metrics_path),
        );
        problems.check(
            (1..=10_000).contains(&self.concurrency),
            "node_exporter.concurrency",
            || format!("{} is outside 1–10000", self.concurrency),
        );
        problems.check(
            self.status_interval_seconds >= 1,
            "node_exporter.status_interval_seconds",
            || "must be at least 1".into(),
        );
    }
}

/// `[remote_write]` as the file and the environment say it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteWriteSettings {
    /// See [`RemoteWriteSettings::enabled`].
    pub enabled: bool,
    /// `address:port`.
    pub listen: String,
    /// See [`RemoteWriteSettings::path`].
    pub path: String,
    /// See [`RemoteWriteSettings::max_body_bytes`].
    pub max_body_bytes: usize,
    /// See [`RemoteWriteSettings::workers`].
    pub workers: usize,
}

impl Default for RawRemoteWriteSettings {
    fn default() -> Self {
        let defaults = RemoteWriteSettings::default();
        Self {
            enabled: defaults.enabled,
            listen: defaults.listen.to_string(),
            path: defaults.path,
            max_body_bytes: defaults.max_body_bytes,
            workers: defaults.workers,
        }
    }
}

/// `[remote_write]`, validated: the Prometheus remote-write receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteWriteSettings {
    /// Run the receiver inside `fleetcast up`.
    pub enabled: bool,
    /// Address the HTTP server listens on (port 0: any free port).
    pub listen: SocketAddr,
    /// Path of the write endpoint.
    pub path: String,
    /// Largest request body accepted, compressed and decompressed, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads.
    pub workers: usize,
}

impl Default for RemoteWriteSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9201)),
            path: "/api/v1/write".into(),
            max_body_bytes: 32 << 20,
            workers: 2,
        }
    }
}

impl RawRemoteWriteSettings {
    pub(super) fn validate(self, problems: &mut Problems) -> RemoteWriteSettings {
        let defaults = RemoteWriteSettings::default();
        let listen = self.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add(
                "remote_write.listen",
                format!("`{}` is not an address:port", self.listen),
            );
            defaults.listen
        });
        problems.check(self.path.starts_with('/'), "remote_write.path", || {
            format!("`{}` must start with /", self.path)
        });
        problems.check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            "remote_write.max_body_bytes",
            || format!("{} is outside 1024–1073741824", self.max_body_bytes),
        );
        problems.check(
            (1..=64).contains(&self.workers),
            "remote_write.workers",
            || format!("{} is outside 1–64", self.workers),
        );
        RemoteWriteSettings {
            enabled: self.enabled,
            listen,
            path: self.path,
            max_body_bytes: self.max_body_bytes,
            workers: self.workers,
        }
    }
}
