//! Ground truth: every episode of trouble the simulation put into the data, as the engine
//! knows it (not reconstructed from the samples afterwards), with the first step each alert
//! threshold was crossed while it lasted.
//!
//! Four kinds of episode ([`LabelKind`]), tracked per server, each a run of consecutive steps:
//!
//! | kind | while | metrics |
//! |---|---|---|
//! | `degrading` / `critical` | an incident ramp (natural, or a scenario's forcing) has weight > 0; `critical` once it heads for critical targets | cpu_user, mem_used, and cpu_iowait on databases |
//! | `cascade` | an upstream server's cascade reaches this one (`source` names the upstream) | those the dependency's impacts move |
//! | `critical_issue` | the Markov state is CRITICAL_ISSUE | those the state's multipliers raise |
//! | `offline` | the server reports nothing | none |
//!
//! Crossings are tested on the server's reported values against the [`Threshold`]s given
//! (by default the catalog's, [`CATALOG_THRESHOLDS`], the same as `[alerts.metrics]`), for
//! the episode's own metrics only, from its first step to its last.

use super::layout::ServerSpec;
use super::profiles::{self, State};
use super::{IncidentKind, Row};
use crate::catalog::{Metric, Profile};
use crate::levels::Level;
use serde::Serialize;

/// The warning and critical values of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    /// The metric.
    #[serde(serialize_with = "metric_name")]
    pub metric: Metric,
    /// From this value on the metric is at `warning`.
    pub warning: f64,
    /// From this value on it is `critical`.
    pub critical: f64,
}

impl Threshold {
    /// This threshold for a server of `profile` at UTC `hour`, lifted above the profile's
    /// normal by `sigmas` ([`crate::catalog::profile_thresholds`], as the alert router
    /// lifts its rules; 0 keeps it).
    pub fn for_profile(&self, profile: Profile, sigmas: f64, hour: u32) -> Threshold {
        let (warning, critical) = crate::catalog::profile_thresholds(
            self.metric,
            self.warning,
            self.critical,
            profile,
            sigmas,
            hour,
        );
        Threshold {
            metric: self.metric,
            warning,
            critical,
        }
    }

    /// The level a value stands at: `Critical`, `Warning` or `Healthy`.
    pub fn level_of(&self, value: f64) -> Level {
        if value >= self.critical {
            Level::Critical
        } else if value >= self.warning {
            Level::Warning
        } else {
            Level::Healthy
        }
    }
}

/// The catalog's alert thresholds (§5 "Alerts"), the defaults of `[alerts.metrics]`.
pub const CATALOG_THRESHOLDS: [Threshold; 5] = [
    Threshold {
        metric: Metric::CpuUserPct,
        warning: 85.0,
        critical: 95.0,
    },
    Threshold {
        metric: Metric::MemUsedPct,
        warning: 90.0,
        critical: 98.0,
    },
    Threshold {
        metric: Metric::CpuIowaitPct,
        warning: 20.0,
        critical: 30.0,
    },
    Threshold {
        metric: Metric::SwapUsedPct,
        warning: 25.0,
        critical: 50.0,
    },
    Threshold {
        metric: Metric::DiskUsagePct,
        warning: 85.0,
        critical: 95.0,
    },
];

fn metric_name<S: serde::Serializer>(metric: &Metric, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(metric.name())
}

fn metric_names<S: serde::Serializer>(
    metrics: &[Metric],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(metrics.iter().map(|metric| metric.name()))
}

/// What kind of trouble an episode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// An incident ramp towards degraded levels (never heading for critical ones).
    Degrading,
    /// An incident ramp that headed for critical levels.
    Critical,
    /// Suffering an upstream server's cascade.
    Cascade,
    /// The Markov state CRITICAL_ISSUE (a jump, not a ramp).
    CriticalIssue,
    /// Reporting nothing.
    Offline,
}

impl LabelKind {
    /// The name in the labels file.
    pub fn name(self) -> &'static str {
        match self {
            LabelKind::Degrading => "degrading",
            LabelKind::Critical => "critical",
            LabelKind::Cascade => "cascade",
            LabelKind::CriticalIssue => "critical_issue",
            LabelKind::Offline => "offline",
        }
    }
}

/// The first step an episode's metric stood at or above a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossing {
    /// The metric.
    #[serde(serialize_with = "metric_name")]
    pub metric: Metric,
    /// `warning` or `critical`.
    pub level: Level,
    /// The step, from 0.
    pub step: u64,
    /// Start of the step, unix ms.
    pub at_ms: i64,
    /// The value reported.
    pub value: f64,
}

/// One episode on one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    /// Number of the episode, in order of start (then server order).
    pub id: u64,
    /// The server.
    pub server: String,
    /// Its profile.
    pub profile: Profile,
    /// The kind of episode.
    pub kind: LabelKind,
    /// For a cascade: the upstream server that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The metrics the episode moves (crossings are tested on these).
    #[serde(serialize_with = "metric_names")]
    pub metrics: Vec<Metric>,
    /// First step of the episode.
    pub start_step: u64,
    /// Start of the first step, unix ms.
    pub start_ms: i64,
    /// First step after the episode (`None`: still going when the labels were taken).
    pub end_step: Option<u64>,
    /// Start of that step, unix ms.
    pub end_ms: Option<i64>,
    /// Largest incident weight or cascade impact during the episode (1 for the others).
    pub peak: f64,
    /// The first crossing of each (metric, level), in order.
    pub crossings: Vec<Crossing>,
}

impl Label {
    /// The first crossing at `level` or above, of any of the episode's metrics.
    pub fn first_crossing(&self, level: Level) -> Option<&Crossing> {
        self.crossings
            .iter()
            .filter(|crossing| crossing.level >= level)
            .min_by_key(|crossing| crossing.at_ms)
    }
}

/// Thresholds for every profile and UTC hour, lifted from one set
/// ([`Threshold::for_profile`]): what "crossing a threshold" means for a given server.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileThresholds {
    base: Vec<Threshold>,
    sigmas: f64,
    /// By `profile.index() * 24 + hour`.
    table: Vec<Vec<Threshold>>,
}

impl ProfileThresholds {
    /// `base` lifted for every profile and hour by `sigmas` (0: `base` everywhere).
    pub fn new(base: &[Threshold], sigmas: f64) -> ProfileThresholds {
        let table = Profile::ALL
            .iter()
            .flat_map(|&profile| {
                (0..24).map(move |hour| {
                    base.iter()
                        .map(|threshold| threshold.for_profile(profile, sigmas, hour))
                        .collect()
                })
            })
            .collect();
        ProfileThresholds {
            base: base.to_vec(),
            sigmas,
            table,
        }
    }

    /// The thresholds before the lift.
    pub fn base(&self) -> &[Threshold] {
        &self.base
    }

    /// Standard deviations above a profile's normal the thresholds are lifted by.
    pub fn sigmas(&self) -> f64 {
        self.sigmas
    }

    /// The thresholds of a server of `profile` at unix time `ts_ms`, in the order of
    /// [`Self::base`].
    pub fn get(&self, profile: Profile, ts_ms: i64) -> &[Threshold] {
        let hour = crate::catalog::utc_hour(ts_ms) as usize;
        &self.table[profile.index() * 24 + hour]
    }

    /// Per profile whose thresholds differ from the base at some hour, its thresholds at
    /// each UTC hour 0–23, by profile name.
    pub fn lifted(&self) -> std::collections::BTreeMap<String, Vec<Vec<Threshold>>> {
        Profile::ALL
            .iter()
            .zip(self.table.chunks(24))
            .filter(|(_, hours)| hours.iter().any(|thresholds| *thresholds != self.base))
            .map(|(profile, hours)| (profile.name().to_string(), hours.to_vec()))
            .collect()
    }
}

/// The kinds tracked per server, one slot each.
const SLOTS: [LabelKind; 4] = [
    LabelKind::Degrading, // incident ramps; becomes Critical when one heads there
    LabelKind::Cascade,
    LabelKind::CriticalIssue,
    LabelKind::Offline,
];

/// Builds the labels step by step from the engine's own rows.
#[derive(Debug, Clone)]
pub struct Labeller {
    thresholds: ProfileThresholds,
    /// Per server, per slot: the episode in progress.
    open: Vec<[Option<Label>; 4]>,
    done: Vec<Label>,
    next_id: u64,
}

impl Labeller {
    /// A labeller for `servers` servers testing crossings against `thresholds`, lifted for
    /// each server's profile by `sigmas` ([`Threshold::for_profile`]; 0: as given).
    pub fn new(servers: usize, thresholds: &[Threshold], sigmas: f64) -> Labeller {
        Labeller {
            thresholds: ProfileThresholds::new(thresholds, sigmas),
            open: vec![[None, None, None, None]; servers],
            done: Vec::new(),
            next_id: 0,
        }
    }

    /// The thresholds crossings are tested against.
    pub fn thresholds(&self) -> &ProfileThresholds {
        &self.thresholds
    }

    /// Takes in one computed step.
    pub(super) fn observe(&mut self, step: u64, ts_ms: i64, specs: &[ServerSpec], rows: &[Row]) {
        for (index, (spec, row)) in specs.iter().zip(rows).enumerate() {
            let active = [
                row.incident != IncidentKind::None,
                row.cascade_source.is_some() && row.cascade_impact > 0.0,
                row.state == State::CriticalIssue,
                row.values.is_none(),
            ];
            for slot in 0..SLOTS.len() {
                let source = row
                    .cascade_source
                    .map(|source| specs[source as usize].name.clone());
                let open = &mut self.open[index][slot];
                // A cascade from another upstream is another episode.
                let restart = slot == 1
                    && open
                        .as_ref()
                        .is_some_and(|label| active[slot] && label.source != source);
                if let Some(mut label) = open.take_if(|_| !active[slot] || restart) {
                    label.end_step = Some(step);
                    label.end_ms = Some(ts_ms);
                    self.done.push(label);
                }
                if active[slot] && open.is_none() {
                    *open = Some(Label {
                        id: self.next_id,
                        server: spec.name.clone(),
                        profile: spec.profile,
                        kind: SLOTS[slot],
                        source: if slot == 1 { source } else { None },
                        metrics: metrics_of(SLOTS[slot], spec, row),
                        start_step: step,
                        start_ms: ts_ms,
                        end_step: None,
                        end_ms: None,
                        peak: 0.0,
                        crossings: Vec::new(),
                    });
                    self.next_id += 1;
                }
                let Some(label) = open.as_mut() else {
                    continue;
                };
                match slot {
                    0 => {
                        if row.incident == IncidentKind::Critical {
                            label.kind = LabelKind::Critical;
                        }
                        label.peak = label.peak.max(row.incident_intensity);
                    }
                    1 => label.peak = label.peak.max(row.cascade_impact),
                    _ => label.peak = 1.0,
                }
                let Some(values) = &row.values else {
                    continue;
                };
                for threshold in self.thresholds.get(spec.profile, ts_ms) {
                    if !label.metrics.contains(&threshold.metric) {
                        continue;
                    }
                    let value = values[threshold.metric.index()];
                    for level in [Level::Warning, Level::Critical] {
                        let seen = label
                            .crossings
                            .iter()
                            .any(|c| c.metric == threshold.metric && c.level == level);
                        if !seen && threshold.level_of(value) >= level {
                            label.crossings.push(Crossing {
                                metric: threshold.metric,
                                level,
                                step,
                                at_ms: ts_ms,
                                value,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Every episode so far, finished ones and those still going (`end_step: None`), by id.
    pub fn labels(&self) -> Vec<Label> {
        let mut labels = self.done.clone();
        labels.extend(self.open.iter().flatten().flatten().cloned());
        labels.sort_by_key(|label| label.id);
        labels
    }
}

/// Version of the labels file format.
pub const LABELS_VERSION: u16 = 1;

/// The labels file `fleetcast export --labels FILE` writes (JSON): what was simulated and
/// every episode in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelsFile {
    /// Format version, [`LABELS_VERSION`].
    pub v: u16,
    /// Seed of the simulation.
    pub seed: u64,
    /// Fleet size.
    pub servers: u32,
    /// Step length in seconds.
    pub step_seconds: u32,
    /// Start of the first step, unix ms.
    pub start_ms: i64,
    /// Steps simulated.
    pub steps: u64,
    /// Scenario simulated.
    pub scenario: super::Scenario,
    /// The thresholds crossings were tested against (before the profile lift).
    pub thresholds: Vec<Threshold>,
    /// Standard deviations above a profile's normal the thresholds were lifted by
    /// (`alerts.profile_normal_sigmas`; 0: not lifted).
    pub profile_normal_sigmas: f64,
    /// The lifted thresholds of the profiles they differ for, by profile name, one list
    /// per UTC hour 0–23.
    pub profile_thresholds: std::collections::BTreeMap<String, Vec<Vec<Threshold>>>,
    /// Every episode, by id.
    pub labels: Vec<Label>,
}

impl LabelsFile {
    /// Writes the file as pretty JSON to `path`, whole or not at all: into a temporary file
    /// beside it, then renamed over it (a reader never sees half a file).
    ///
    /// # Errors
    /// The I/O error of the write or the rename.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("labels serialize");
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, path)
    }
}

/// The metrics an episode of `kind` moves on `spec`.
fn metrics_of(kind: LabelKind, spec: &ServerSpec, row: &Row) -> Vec<Metric> {
    let mut metrics = match kind {
        LabelKind::Degrading | LabelKind::Critical => {
            let mut forced = vec![Metric::CpuUserPct, Metric::MemUsedPct];
            if spec.profile == Profile::Database {
                forced.push(Metric::CpuIowaitPct);
            }
            forced
        }
        LabelKind::Cascade => spec
            .upstreams
            .iter()
            .filter(|dependency| Some(dependency.upstream) == row.cascade_source)
            .flat_map(|dependency| dependency.impacts.iter())
            .flat_map(|(impact, _)| impact.effects().iter())
            .map(|&(metric, _, _)| Metric::ALL[metric])
            .collect(),
        LabelKind::CriticalIssue => Metric::ALL
            .iter()
            .copied()
            .filter(|metric| State::CriticalIssue.multipliers()[metric.index()] > 1.0)
            .filter(|metric| metric.index() != profiles::IDLE)
            .collect(),
        LabelKind::Offline => Vec::new(),
    };
    metrics.sort_by_key(|metric| metric.index());
    metrics.dedup();
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{RELEASE_STEPS, Scenario, SimConfig, Simulation};

    /// Standard deviations the labels' thresholds are lifted by in these tests (the
    /// alert router's default).
    const SIGMAS: f64 = 2.5;

    fn fleet(scenario: Scenario) -> Simulation {
        let mut config = SimConfig::new(90, 42);
        config.scenario = scenario;
        let mut fleet = Simulation::new(&config).unwrap();
        fleet.record_labels(&CATALOG_THRESHOLDS, SIGMAS);
        fleet
    }

    fn active(kind: LabelKind, row: &Row) -> bool {
        match kind {
            LabelKind::Degrading | LabelKind::Critical => row.incident != IncidentKind::None,
            LabelKind::Cascade => row.cascade_source.is_some(),
            LabelKind::CriticalIssue => row.state == State::CriticalIssue,
            LabelKind::Offline => row.values.is_none(),
        }
    }

    /// Every label matches the rows the engine produced: active from its start to its end,
    /// not just before or at its end, and each crossing is the first value at or above the
    /// threshold inside the episode, the threshold being the server's profile-aware one at
    /// that step's hour.
    #[test]
    fn labels_follow_the_rows() {
        let mut fleet = fleet(Scenario::Natural);
        let index: std::collections::HashMap<String, usize> = fleet
            .servers()
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.name.clone(), i))
            .collect();
        let steps = 288 * 2;
        let mut times = Vec::new();
        let rows: Vec<Vec<Row>> = (0..steps)
            .map(|_| {
                let step = fleet.step();
                times.push(step.ts_ms);
                step.rows.to_vec()
            })
            .collect();
        let lifted = ProfileThresholds::new(&CATALOG_THRESHOLDS, SIGMAS);
        let profiles: Vec<Profile> = fleet.servers().iter().map(|spec| spec.profile).collect();
        let labels = fleet.labeller().unwrap().labels();
        let mut kinds = std::collections::BTreeSet::new();
        let mut crossings = 0;
        for label in &labels {
            kinds.insert(label.kind);
            let server = index[&label.server];
            let start = label.start_step as usize;
            let end = label.end_step.map_or(steps, |end| end as usize);
            assert!(start < end, "{label:?}");
            for step in rows.iter().take(end).skip(start) {
                assert!(active(label.kind, &step[server]), "{label:?}");
            }
            if start > 0 && label.kind != LabelKind::Cascade {
                assert!(!active(label.kind, &rows[start - 1][server]), "{label:?}");
            }
            if end < steps && label.kind != LabelKind::Cascade {
                assert!(!active(label.kind, &rows[end][server]), "{label:?}");
            }
            for (slot, threshold) in CATALOG_THRESHOLDS.iter().enumerate() {
                for level in [Level::Warning, Level::Critical] {
                    let expected = (start..end).find(|&step| {
                        let threshold = lifted.get(profiles[server], times[step])[slot];
                        label.metrics.contains(&threshold.metric)
                            && rows[step][server].values.is_some_and(|values| {
                                threshold.level_of(values[threshold.metric.index()]) >= level
                            })
                    });
                    let found = label
                        .crossings
                        .iter()
                        .find(|c| c.metric == threshold.metric && c.level == level)
                        .map(|c| c.step as usize);
                    assert_eq!(found, expected, "{label:?} {threshold:?} {level}");
                    crossings += usize::from(found.is_some());
                }
            }
        }
        for kind in [
            LabelKind::Degrading,
            LabelKind::Critical,
            LabelKind::Cascade,
            LabelKind::CriticalIssue,
            LabelKind::Offline,
        ] {
            assert!(kinds.contains(&kind), "no {} label in 2 days", kind.name());
        }
        assert!(crossings > 0);
        let ids: Vec<u64> = labels.iter().map(|label| label.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    /// The `critical` scenario's servers get a `critical` label that crosses warning during
    /// the ramp and stays open while the scenario holds; back to `healthy` it ends.
    #[test]
    fn critical_scenario_is_labelled() {
        let mut fleet = fleet(Scenario::Healthy);
        for _ in 0..24 {
            fleet.step();
        }
        assert!(
            fleet.labeller().unwrap().labels().is_empty(),
            "healthy has no trouble"
        );
        let affected = fleet.set_scenario(Scenario::Critical).affected;
        for _ in 0..8 {
            fleet.step();
        }
        let labels = fleet.labeller().unwrap().labels();
        let critical: Vec<&Label> = labels
            .iter()
            .filter(|label| label.kind == LabelKind::Critical)
            .collect();
        assert_eq!(critical.len(), affected.len());
        let crossed = critical
            .iter()
            .filter(|label| label.first_crossing(Level::Warning).is_some())
            .count();
        assert!(
            crossed * 10 >= critical.len() * 9,
            "{crossed} of {} crossed",
            critical.len()
        );
        assert!(
            critical
                .iter()
                .all(|label| label.start_step == 24 && label.end_step.is_none())
        );
        fleet.set_scenario(Scenario::Healthy);
        for _ in 0..=RELEASE_STEPS {
            fleet.step();
        }
        let labels = fleet.labeller().unwrap().labels();
        assert!(
            labels
                .iter()
                .filter(|label| label.kind == LabelKind::Critical)
                .all(|label| label.end_step.is_some())
        );
    }
}
