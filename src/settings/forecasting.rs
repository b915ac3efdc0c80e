//! `[window_keeper]` and `[predictor]`: the per-server windows and the forecasting workers.
//! What the file says is what the program uses, so one type serves both stages; `check`
//! reports bad values.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// A server's predict job every this many closed steps (1: every step), its steps offset
    /// by a hash of its name so the fleet's jobs spread over the steps: fewer forecasts when
    /// the predictors cannot make one per server and step.
    pub forecast_every_steps: u32,
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
            forecast_every_steps: 1,
        }
    }
}

impl WindowKeeperSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            (1..=96).contains(&self.forecast_every_steps),
            "window_keeper.forecast_every_steps",
            || {
                format!(
                    "{} is outside 1–96 (a forecast covers 96 steps)",
                    self.forecast_every_steps
                )
            },
        );
        problems.check(
            (2..=10_000).contains(&self.context_steps),
            "window_keeper.context_steps",
            || format!("{} is outside 2–10000", self.context_steps),
        );
        problems.check(
            (1..=self.context_steps).contains(&self.min_observed_steps),
            "window_keeper.min_observed_steps",
            || {
                format!(
                    "{} is outside 1–{} (the context)",
                    self.min_observed_steps, self.context_steps
                )
            },
        );
        problems.check(
            self.status_interval_seconds >= 1,
            "window_keeper.status_interval_seconds",
            || "must be at least 1".into(),
        );
    }
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

impl PredictorSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check(
            !self.model_dir.as_os_str().is_empty(),
            "predictor.model_dir",
            || "must name a model directory".into(),
        );
        problems.check(
            (1..=1024).contains(&self.max_batch),
            "predictor.max_batch",
            || format!("{} is outside 1–1024", self.max_batch),
        );
        problems.check(self.max_wait_ms <= 60_000, "predictor.max_wait_ms", || {
            format!("{} is above one minute", self.max_wait_ms)
        });
        problems.check(
            (1..=256).contains(&self.intra_threads),
            "predictor.intra_threads",
            || format!("{} is outside 1–256", self.intra_threads),
        );
        problems.check(
            (1..=64).contains(&self.workers),
            "predictor.workers",
            || format!("{} is outside 1–64", self.workers),
        );
        problems.check(
            self.worker_id.is_empty() || crate::catalog::is_valid_server_name(&self.worker_id),
            "predictor.worker_id",
            || format!("`{}` must be letters, digits, `-` or `_`", self.worker_id),
        );
        problems.check(
            (1..=3600).contains(&self.ack_wait_seconds),
            "predictor.ack_wait_seconds",
            || format!("{} is outside 1–3600", self.ack_wait_seconds),
        );
        problems.check(
            self.max_ack_pending >= 2 * self.max_batch as i64,
            "predictor.max_ack_pending",
            || {
                format!(
                    "{} is below twice predictor.max_batch ({})",
                    self.max_ack_pending, self.max_batch
                )
            },
        );
    }
}
