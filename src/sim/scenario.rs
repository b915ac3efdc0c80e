//! The scenarios (`healthy`, `natural`, `degrading`, `critical`, `cascade`) and the plan of
//! which servers each one drives, with which targets, over how many steps.

use super::layout::FleetLayout;
use super::profiles::{CASCADE_SOURCE, CRITICAL, CRITICAL_FRESH, DEGRADING, Targets};
use super::{IncidentKind, SimError};
use std::fmt;
use std::str::FromStr;

/// Steps over which servers a scenario no longer drives return to normal.
pub const RELEASE_STEPS: u32 = 4;
/// Steps of the `degrading` scenario's ramp.
pub const DEGRADING_STEPS: u32 = 6;
/// Steps of `critical` after `degrading`.
pub const CRITICAL_FROM_DEGRADING_STEPS: u32 = 3;
/// Steps of `critical` from any other scenario.
pub const CRITICAL_FRESH_STEPS: u32 = 4;
/// Steps of the `cascade` scenario's source ramp.
pub const CASCADE_STEPS: u32 = 4;

/// What the generator simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Every server held healthy: diurnal load, noise and AR(1) only.
    Healthy,
    /// Markov churn, incident ramps and cascades (training data).
    Natural,
    /// `natural` plus 20 % of servers ramping towards cpu 75 %, mem 80 %.
    Degrading,
    /// `natural` plus servers ramping towards cpu 90–92 %, mem 93–95 %.
    Critical,
    /// `natural` plus two failing databases and their dependents.
    Cascade,
}

impl Scenario {
    /// Every scenario, in the order the settings and `fleetcast scenario` list them.
    pub const ALL: [Scenario; 5] = [
        Scenario::Healthy,
        Scenario::Natural,
        Scenario::Degrading,
        Scenario::Critical,
        Scenario::Cascade,
    ];

    /// The name used in settings, requests and replies.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Natural => "natural",
            Scenario::Degrading => "degrading",
            Scenario::Critical => "critical",
            Scenario::Cascade => "cascade",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Scenario {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = SimError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| SimError::UnknownScenario(name.to_string()))
    }
}

/// Which servers a scenario drives, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioPlan {
    /// Every server the scenario drives (for `healthy`: all; for `cascade`: sources and
    /// dependents), by index.
    pub affected: Vec<u32>,
    pub(super) forced: Vec<u32>,
    pub(super) targets: Targets,
    pub(super) kind: IncidentKind,
    pub(super) steps: u32,
    pub(super) cascading: bool,
}

impl FleetLayout {
    /// The servers each scenario drives when switching from `old` to `new`.
    pub fn plan(&self, old: Scenario, new: Scenario) -> ScenarioPlan {
        let n = self.servers.len();
        let share = |p: f64| ((n as f64 * p).round() as usize).max(1);
        let mut plan = ScenarioPlan {
            affected: Vec::new(),
            forced: Vec::new(),
            targets: DEGRADING,
            kind: IncidentKind::None,
            steps: RELEASE_STEPS,
            cascading: false,
        };
        match new {
            Scenario::Healthy => plan.affected = (0..n as u32).collect(),
            Scenario::Natural => {}
            Scenario::Degrading => {
                plan.forced = self.scenario_rank[..share(0.20)].to_vec();
                plan.kind = IncidentKind::Degrading;
                plan.steps = DEGRADING_STEPS;
            }
            Scenario::Critical if old == Scenario::Degrading => {
                plan.forced = self.scenario_rank[..share(0.20)].to_vec();
                plan.targets = CRITICAL;
                plan.kind = IncidentKind::Critical;
                plan.steps = CRITICAL_FROM_DEGRADING_STEPS;
            }
            Scenario::Critical => {
                plan.forced = self.scenario_rank[..share(0.25)].to_vec();
                plan.targets = CRITICAL_FRESH;
                plan.kind = IncidentKind::Critical;
                plan.steps = CRITICAL_FRESH_STEPS;
            }
            Scenario::Cascade => {
                plan.forced = self.cascade_sources.clone();
                plan.targets = CASCADE_SOURCE;
                plan.kind = IncidentKind::Critical;
                plan.steps = CASCADE_STEPS;
                plan.cascading = true;
            }
        }
        if new != Scenario::Healthy {
            plan.affected = plan.forced.clone();
            if plan.cascading {
                for (index, spec) in self.servers.iter().enumerate() {
                    if spec
                        .upstreams
                        .iter()
                        .any(|dep| plan.forced.contains(&dep.upstream))
                    {
                        plan.affected.push(index as u32);
                    }
                }
            }
            plan.affected.sort_unstable();
        }
        plan
    }
}
