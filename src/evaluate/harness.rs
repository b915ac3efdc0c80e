//! The harness of `fleetcast evaluate alerts`: simulates a stretch of a fleet at full speed,
//! feeds every step to each detector (fleetcast's pipeline and the baselines), scores their
//! alerts against the simulation's ground truth and prints one table.
//!
//! A day of warm-up is simulated first (windows fill, `predict_linear` has its hour): alerts
//! raised in it are not counted and labels start after it.

use super::baselines::{RuleBaseline, Signal};
use super::score::{AlertChange, ScoreParams, Scores, score};
use crate::levels::Level;
use crate::sim::{
    CATALOG_THRESHOLDS, Label, Row, Scenario, ServerSpec, SimConfig, SimError, Simulation,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// Steps of warm-up before scoring starts: one day of 300-second steps.
const WARMUP_HOURS: u32 = 24;

/// Options of `fleetcast evaluate alerts`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Random seed of the simulated fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated days scored (after one day of warm-up).
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Fleet size.
    #[arg(long, default_value_t = 90)]
    pub servers: u32,
    /// `natural` (incidents, cascades, Markov churn) or `healthy` (a fleet held healthy).
    #[arg(long, default_value = "natural")]
    pub scenario: Scenario,
    /// Start of the warm-up day (RFC 3339).
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// The alert level that counts as alerting for recall, precision and lead time.
    #[arg(long, default_value = "warning")]
    pub level: Level,
    /// Minutes before an episode's start an alert still belongs to it.
    #[arg(long, default_value_t = 30)]
    pub early_minutes: i64,
    /// Minutes after an episode's end an alert still belongs to it.
    #[arg(long, default_value_t = 30)]
    pub late_minutes: i64,
    /// Test the ground truth's crossings and the baselines' rules against the catalog's
    /// thresholds for every profile, instead of the thresholds the alert router uses (lifted
    /// above each profile's normal by `alerts.profile_normal_sigmas`).
    #[arg(long)]
    pub catalog_thresholds: bool,
    /// `alerts.profile_normal_sigmas` from the settings (set by the binary).
    #[arg(skip)]
    pub profile_normal_sigmas: f64,
    /// Score only the two baselines (no model, no pipeline).
    #[arg(long)]
    pub baselines_only: bool,
    /// Also score fleetcast with these settings changed (the `[risk]` and `[alerts]` keys
    /// matter), sharing the base run's forecasts: NAME:KEY=VALUE[,KEY=VALUE...], e.g.
    /// `q90:alerts.predictive_quantile=p90`. Repeatable.
    #[arg(long = "variant", value_name = "NAME:KEY=VALUE,...")]
    pub variants: Vec<String>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write every detector's alert changes and the labels to this JSON file (for
    /// looking into what raised what).
    #[arg(long)]
    pub dump: Option<std::path::PathBuf>,
}

impl EvaluateArgs {
    /// The defaults.
    pub fn new() -> EvaluateArgs {
        EvaluateArgs {
            seed: 7,
            days: 14,
            servers: 90,
            scenario: Scenario::Natural,
            start: "2026-01-05T00:00:00Z".into(),
            level: Level::Warning,
            early_minutes: 30,
            late_minutes: 30,
            baselines_only: false,
            variants: Vec::new(),
            json: false,
            dump: None,
            catalog_thresholds: false,
            profile_normal_sigmas: crate::settings::AlertSettings::default().profile_normal_sigmas,
        }
    }

    /// Standard deviations above each profile's normal the ground truth's and the
    /// baselines' thresholds are lifted by: the alert router's `profile_normal_sigmas`, or
    /// 0 with `--catalog-thresholds`.
    pub fn threshold_sigmas(&self) -> f64 {
        if self.catalog_thresholds {
            0.0
        } else {
            self.profile_normal_sigmas
        }
    }
}

impl Default for EvaluateArgs {
    fn default() -> Self {
        EvaluateArgs::new()
    }
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// An option is unusable.
    #[error("--{flag}: {reason}")]
    Args {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The options do not make a fleet.
    #[error(transparent)]
    Simulation(#[from] SimError),
    /// A detector failed.
    #[error("{detector}")]
    Detector {
        /// Which.
        detector: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One simulated step as the detectors see it.
pub struct StepView<'a> {
    /// Start of the step, unix ms.
    pub ts_ms: i64,
    /// Every server.
    pub specs: &'a [ServerSpec],
    /// Their rows (values `None` while offline).
    pub rows: &'a [Row],
}

/// Something that raises alerts from the samples: one or more rows of the table (fleetcast's
/// pipeline has one per alerting variant, all sharing its forecasts).
pub trait Detector {
    /// The names of its rows.
    fn names(&self) -> Vec<String>;
    /// Takes one step in, pushing the alert changes of row `i` onto `outs[i]`.
    ///
    /// # Errors
    /// Whatever stops the detector.
    fn observe(
        &mut self,
        step: &StepView,
        outs: &mut [Vec<AlertChange>],
    ) -> Result<(), EvaluateError>;
    /// What it did, in words, for the report.
    fn summary(&self) -> Option<String> {
        None
    }
}

impl Detector for RuleBaseline {
    fn names(&self) -> Vec<String> {
        vec![self.signal().name().to_string()]
    }

    fn observe(
        &mut self,
        step: &StepView,
        outs: &mut [Vec<AlertChange>],
    ) -> Result<(), EvaluateError> {
        for (index, (spec, row)) in step.specs.iter().zip(step.rows).enumerate() {
            RuleBaseline::observe(
                self,
                index,
                &spec.name,
                spec.profile,
                step.ts_ms,
                row.values.as_ref(),
                &mut outs[0],
            );
        }
        Ok(())
    }
}

/// The two baselines for `args`: `cpu > 85 for 5m` style static thresholds and
/// `predict_linear(metric[1h], 3600)`, at the thresholds the ground truth is tested on
/// ([`EvaluateArgs::threshold_sigmas`]).
pub fn baselines(args: &EvaluateArgs) -> Vec<Box<dyn Detector>> {
    const FOR_MS: i64 = 5 * 60_000;
    let servers = args.servers as usize;
    let sigmas = args.threshold_sigmas();
    vec![
        Box::new(RuleBaseline::new(
            Signal::Current,
            FOR_MS,
            &CATALOG_THRESHOLDS,
            sigmas,
            servers,
        )),
        Box::new(RuleBaseline::new(
            Signal::PredictLinear {
                window_ms: 3_600_000,
                horizon_ms: 3_600_000,
            },
            FOR_MS,
            &CATALOG_THRESHOLDS,
            sigmas,
            servers,
        )),
    ]
}

/// One detector's row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorReport {
    /// Its name.
    pub detector: String,
    /// Its scores.
    pub scores: Scores,
    /// Alert changes it made (all subjects, all levels).
    pub changes: usize,
    /// What it did, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// What `fleetcast evaluate alerts` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Fleet size.
    pub servers: u32,
    /// Days scored.
    pub days: u32,
    /// Scenario.
    pub scenario: Scenario,
    /// The level that counts as alerting.
    pub level: Level,
    /// Episodes labelled in the scored stretch, by kind.
    pub episodes: std::collections::BTreeMap<String, usize>,
    /// One row per detector.
    pub detectors: Vec<DetectorReport>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Runs the evaluation: simulates, feeds `detectors`, scores them.
///
/// # Errors
/// [`EvaluateError`] for unusable options or a failing detector.
pub fn evaluate(
    args: &EvaluateArgs,
    detectors: &mut [Box<dyn Detector>],
) -> Result<Report, EvaluateError> {
    let started = Instant::now();
    if !matches!(args.scenario, Scenario::Natural | Scenario::Healthy) {
        return Err(EvaluateError::Args {
            flag: "scenario",
            reason: format!("`{}`: natural or healthy", args.scenario),
        });
    }
    if args.days == 0 {
        return Err(EvaluateError::Args {
            flag: "days",
            reason: "must be at least 1".into(),
        });
    }
    let start_ms = chrono::DateTime::parse_from_rfc3339(&args.start)
        .map_err(|error| EvaluateError::Args {
            flag: "start",
            reason: format!("`{}`: {error}", args.start),
        })?
        .timestamp_millis();
    let mut config = SimConfig::new(args.servers, args.seed);
    config.start_ms = start_ms;
    config.scenario = args.scenario;
    let mut fleet = Simulation::new(&config)?;
    let step_ms = i64::from(config.step_seconds) * 1000;
    let warmup_steps = u64::from(WARMUP_HOURS) * 3_600_000 / step_ms as u64;
    let scored_steps = u64::from(args.days) * 86_400_000 / step_ms as u64;
    let layout = fleet.layout().clone();
    let specs = layout.servers();
    let rows: Vec<usize> = detectors
        .iter()
        .map(|detector| detector.names().len())
        .collect();
    let mut changes: Vec<Vec<AlertChange>> = vec![Vec::new(); rows.iter().sum()];

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(warmup_steps + scored_steps),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    for index in 0..warmup_steps + scored_steps {
        if index == warmup_steps {
            fleet.record_labels(&CATALOG_THRESHOLDS, args.threshold_sigmas());
        }
        let step = fleet.step();
        let view = StepView {
            ts_ms: step.ts_ms,
            specs,
            rows: step.rows,
        };
        let mut outs = changes.as_mut_slice();
        for (detector, &count) in detectors.iter_mut().zip(&rows) {
            let (mine, rest) = outs.split_at_mut(count);
            detector.observe(&view, mine)?;
            outs = rest;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    let labels: Vec<Label> = fleet
        .labeller()
        .map(|labeller| labeller.labels())
        .unwrap_or_default();
    let mut episodes = std::collections::BTreeMap::new();
    for label in &labels {
        *episodes.entry(label.kind.name().to_string()).or_insert(0) += 1;
    }
    let params = ScoreParams {
        level: args.level,
        early_ms: args.early_minutes * 60_000,
        late_ms: args.late_minutes * 60_000,
        start_ms: fleet.step_start_ms(warmup_steps),
        end_ms: fleet.step_start_ms(warmup_steps + scored_steps),
        server_days: f64::from(args.servers) * f64::from(args.days),
    };
    if let Some(path) = &args.dump {
        let names: Vec<String> = detectors.iter().flat_map(|d| d.names()).collect();
        let dump = serde_json::json!({
            "labels": labels,
            "changes": names
                .iter()
                .zip(&changes)
                .map(|(name, changes)| {
                    let rows: Vec<_> = changes
                        .iter()
                        .map(|c| (c.server.as_str(), c.subject.as_str(), c.at_ms, c.level.name()))
                        .collect();
                    (name.clone(), rows)
                })
                .collect::<std::collections::BTreeMap<_, _>>(),
        });
        std::fs::write(path, serde_json::to_vec(&dump).expect("dump serializes")).map_err(
            |error| EvaluateError::Args {
                flag: "dump",
                reason: format!("{}: {error}", path.display()),
            },
        )?;
    }
    let mut reports = Vec::new();
    let mut changes = changes.iter();
    for detector in detectors.iter() {
        for name in detector.names() {
            let changes = changes.next().expect("one list per row");
            reports.push(DetectorReport {
                detector: name,
                scores: score(&labels, changes, &params),
                changes: changes.len(),
                summary: None,
            });
        }
        if let (Some(summary), Some(last)) = (detector.summary(), reports.last_mut()) {
            last.summary = Some(summary);
        }
    }
    let detectors = reports;
    Ok(Report {
        seed: args.seed,
        servers: args.servers,
        days: args.days,
        scenario: args.scenario,
        level: args.level,
        episodes,
        detectors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value:.digits$}"))
}

impl Report {
    /// The report as a Markdown table with a heading line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "seed {}, {} servers, {} days ({} server-days), scenario {}, alerting = {} or above; episodes: {}; {:.0} s",
            self.seed,
            self.servers,
            self.days,
            self.servers * self.days,
            self.scenario,
            self.level,
            self.episodes
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.seconds
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| detector | incidents | recall | late | precision (alerts) | lead median / p10 (min) | false / server-day: watch, warning, critical | flapping | resolve median (min) | unresolved |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.detectors {
            let s = &row.scores;
            let false_at = |level: &str| s.false_per_server_day.get(level).copied();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ({}) | {} / {} | {}, {}, {} | {} | {} | {} |",
                row.detector,
                s.incidents,
                cell(s.recall, 2),
                s.alerted_late,
                cell(s.precision, 2),
                s.alerts,
                cell(s.lead_median_min, 0),
                cell(s.lead_p10_min, 0),
                cell(false_at("watch"), 3),
                cell(false_at("warning"), 3),
                cell(false_at("critical"), 3),
                cell(s.flapping, 2),
                cell(s.resolve_median_min, 0),
                s.unresolved,
            );
        }
        for row in &self.detectors {
            if let Some(summary) = &row.summary {
                let _ = writeln!(out, "\n{}: {summary}", row.detector);
            }
        }
        out
    }
}
