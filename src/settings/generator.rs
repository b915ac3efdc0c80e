//! `[generator]`: the synthetic fleet. The file's scenario name and start time become a
//! [`Scenario`] and an optional UTC time.

use super::Problems;
use crate::sim::{MAX_SERVERS, Scenario};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;

/// `[generator]` as the file and the environment say it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGeneratorSettings {
    /// See [`GeneratorSettings::enabled`].
    pub enabled: bool,
    /// See [`GeneratorSettings::servers`].
    pub servers: u32,
    /// See [`GeneratorSettings::seed`].
    pub seed: u64,
    /// See [`GeneratorSettings::step_interval_ms`].
    pub step_interval_ms: u64,
    /// See [`GeneratorSettings::backfill_hours`].
    pub backfill_hours: u32,
    /// A scenario name.
    pub scenario: String,
    /// See [`GeneratorSettings::problem_child_share`].
    pub problem_child_share: f64,
    /// RFC 3339, or empty.
    pub start: String,
    /// See [`GeneratorSettings::labels_file`].
    pub labels_file: String,
}

impl Default for RawGeneratorSettings {
    fn default() -> Self {
        let defaults = GeneratorSettings::default();
        Self {
            enabled: defaults.enabled,
            servers: defaults.servers,
            seed: defaults.seed,
            step_interval_ms: defaults.step_interval_ms,
            backfill_hours: defaults.backfill_hours,
            scenario: defaults.scenario.name().into(),
            problem_child_share: defaults.problem_child_share,
            start: String::new(),
            labels_file: String::new(),
        }
    }
}

/// `[generator]`, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Scenario at start.
    pub scenario: Scenario,
    /// Share of servers that are problem children, 0–0.5.
    pub problem_child_share: f64,
    /// Simulated start time; `None` means now minus the backfill, on a step boundary.
    #[serde(serialize_with = "rfc3339")]
    pub start: Option<DateTime<Utc>>,
    /// Where the generator writes the ground truth of what it simulates (every incident,
    /// cascade and offline episode with its first threshold crossings, the format of
    /// `fleetcast export --labels`), rewritten every simulated hour and when it stops;
    /// `None`: no labels.
    #[serde(serialize_with = "path_or_empty")]
    pub labels_file: Option<PathBuf>,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            servers: 90,
            seed: 42,
            step_interval_ms: 5_000,
            backfill_hours: 25,
            scenario: Scenario::Healthy,
            problem_child_share: 0.10,
            start: None,
            labels_file: None,
        }
    }
}

fn path_or_empty<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.serialize_str(&path.to_string_lossy()),
        None => serializer.serialize_str(""),
    }
}

fn rfc3339<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&time.to_rfc3339()),
        None => serializer.serialize_str(""),
    }
}

impl RawGeneratorSettings {
    pub(super) fn validate(self, problems: &mut Problems) -> GeneratorSettings {
        problems.check(
            (1..=MAX_SERVERS).contains(&self.servers),
            "generator.servers",
            || format!("{} is outside 1–{MAX_SERVERS}", self.servers),
        );
        problems.check(
            self.step_interval_ms <= 3_600_000,
            "generator.step_interval_ms",
            || format!("{} is above one hour", self.step_interval_ms),
        );
        problems.check(
            self.backfill_hours <= 24 * 60,
            "generator.backfill_hours",
            || format!("{} is above 60 days", self.backfill_hours),
        );
        problems.check(
            (0.0..=0.5).contains(&self.problem_child_share),
            "generator.problem_child_share",
            || format!("{} is outside 0–0.5", self.problem_child_share),
        );
        let scenario = self.scenario.parse::<Scenario>().unwrap_or_else(|_| {
            problems.add(
                "generator.scenario",
                format!(
                    "`{}` is not one of {}",
                    self.scenario,
                    Scenario::ALL.map(Scenario::name).join(", ")
                ),
            );
            Scenario::Healthy
        });
        let start = if self.start.is_empty() {
            None
        } else {
            match DateTime::parse_from_rfc3339(&self.start) {
                Ok(start) => Some(start.with_timezone(&Utc)),
                Err(_) => {
                    problems.add(
                        "generator.start",
                        format!("`{}` is not an RFC 3339 time", self.start),
                    );
                    None
                }
            }
        };
        let labels_file = (!self.labels_file.is_empty()).then(|| PathBuf::from(&self.labels_file));
        if let Some(path) = &labels_file {
            let folder = path
                .parent()
                .filter(|folder| !folder.as_os_str().is_empty());
            problems.check(
                folder.is_none_or(std::path::Path::is_dir),
                "generator.labels_file",
                || format!("the folder of `{}` does not exist", path.display()),
            );
        }
        GeneratorSettings {
            labels_file,
            enabled: self.enabled,
            servers: self.servers,
            seed: self.seed,
            step_interval_ms: self.step_interval_ms,
            backfill_hours: self.backfill_hours,
            scenario,
            problem_child_share: self.problem_child_share,
            start,
        }
    }
}
