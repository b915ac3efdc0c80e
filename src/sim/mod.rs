//! The simulation engine: a pure, deterministic simulated fleet (no NATS, no wall clock)
//! shared by the generator actor and `fleetcast export`, so live data and training data come from one
//! place: the same AR(1) smoothing, the same UTC hours, the same offline gaps.
//!
//! # Model (catalog §2–3, with the original's defects fixed)
//!
//! - **Simulation.** Profile counts as the original: shares web .28, ml .22, db .17, ingest .11,
//!   risk .09, generic .07 (capped at 10), conductor .06; each `max(1, int(n·p))`, the rest to
//!   web. Below 7 servers the profiles are taken one each in share order. Servers are
//!   ordered by profile ([`Profile::ALL`](crate::catalog::Profile::ALL)) and named `ppml%04d`, `ppdb%03d`, `ppweb%03d`,
//!   `ppcon%02d`, `ppetl%03d`, `pprisk%03d`, `ppgen%03d` from 1. Problem children are exactly
//!   `round(n·share)` servers picked by a seeded hash.
//! - **Randomness.** Every server owns four PCG streams (values, Markov, incidents, cascade
//!   events) seeded from `(seed, profile, ordinal)`, so a server's series depends on the seed
//!   and its name, not on the fleet size, on how steps are published or on the wall clock
//!   (only cascades couple servers, through the dependency graph below). The values stream
//!   draws the same count every step whatever the scenario.
//! - **Time.** One sample per server per step of `step_seconds` (default 300 s); hours are
//!   UTC hours of the simulated clock. The Markov matrix applies once per step (the original
//!   applied it per 5-second tick). Hour-based things stay in hours: degrading incidents ramp
//!   over 2 h (then release over 30 min), critical incidents ramp over 30 min (then release
//!   over 1 h), about 4 degrading and 1.5 critical windows per week per incident-prone server
//!   (problem children plus 20 % of the others; 70 % of degrading starts at 08–18 h, 60 % of
//!   critical starts inside a degrading ramp), cascades start as Poisson(0.15/day) per
//!   upstream server (×1.5 for problem children, 60 % of starts in 09–17 h). The original's
//!   cascade lengths are 5-second ticks and are read as time: duration U(60, 720) ticks =
//!   5–60 min, ramp-up 24 ticks = 2 min, ramp-down 36 ticks = 3 min (read as steps they
//!   lasted 5–60 h and kept dependents under a cascade 15–37 % of the time).
//! - **Values.** Per metric: draw N(mean, std), multiply by the state multiplier and the
//!   diurnal factor (fully for activity metrics, a quarter of its swing for memory and swap,
//!   not at all for disk and uptime: `Metric::diurnal_share`), then AR(1) `y = .85·y + .15·x + N(0, .1·std)`.
//!   Cascade effects and incident forcing apply **after** the AR(1) filter, because their
//!   envelopes are already smooth ramps: a ramp of k steps reaches its target in k steps
//!   (the original filtered them too, lagging every ramp by ~6 steps). Forcing moves
//!   cpu_user, mem_used and, for databases, cpu_iowait to `target + (y − ȳ)`, where ȳ is the
//!   noise-free AR(1) level, so the noise stays. **cpu_idle is derived**:
//!   `100 − user − sys − iowait` (the three scaled down when they exceed 100), so every
//!   scenario moves it (the original generated idle independently and scenarios never
//!   touched it). Percentages are clipped to 0–100 and rounded to 2 decimals, rates and load
//!   are ≥ 0 (2 decimals), close-wait counts are integers ≥ 0, uptime is whole days 0–30,
//!   growing one per simulated day. An OFFLINE server reports nothing (`Row::values` is
//!   `None`: the generator publishes no sample, `export` writes nulls), where the original
//!   wrote zeros that read as cpu_idle 0 %, busy 100 %; and OFFLINE does not reset uptime
//!   (a spell of minutes, several a day per server, is the host not reporting, not a reboot).
//! - **Dependency graph.** Each dependent server is wired to one server of each upstream
//!   profile (`ordinal mod count`), instead of the original's "every server of the profile",
//!   which at large fleets would put every dependent under some cascade at all times. A
//!   cascade's source shows no symptom itself (as the original); its dependents get
//!   `v·(1 + (m−1)·e·s) + add·e·s` per impact effect, and `cascade_impact = e·s`.
//!
//! # Scenarios ([`Scenario`])
//!
//! `healthy` holds every server HEALTHY: diurnal load, noise and AR(1) only; incidents in
//! flight release over 4 steps and cascades stop. `natural` is Markov churn, incident ramps
//! and cascades. The other three are `natural` plus forcing, measured in steps:
//!
//! | scenario | servers | targets (cpu / mem / iowait on databases) | ramp |
//! |---|---|---|---|
//! | `degrading` | 20 % (at least 1), seeded choice | 75 / 80 / 18 % | 6 steps |
//! | `critical` after `degrading` | the same servers | 92 / 95 / 40 % | 3 steps |
//! | `critical` otherwise | 25 % (a superset of the 20 %) | 90 / 93 / 35 % | 4 steps |
//! | `cascade` | 2 seeded databases, plus their dependents through the graph | 95 / 92 / 45 % | 4 steps |
//!
//! Servers a new scenario no longer drives release over 4 steps. `critical` works from any
//! scenario (the original answered HTTP 500).
//!
//! # Files
//!
//! [`labels`] (ground truth: every episode of trouble with its first threshold crossings),
//! [`scenario`] (the scenarios and which servers each drives), [`layout`] (fleet composition,
//! names, seeded choices, dependency graph), [`profiles`] (the numbers: baselines, Markov
//! states, diurnal curve, impacts, incident targets), `incidents` (natural incident and
//! cascade ramps), `step` (one server's values for one step) and this file (the
//! [`Simulation`] that steps them all).

pub mod labels;
pub mod layout;
pub mod profiles;
pub mod scenario;

mod incidents;
mod step;
#[cfg(test)]
mod tests;

pub use labels::{
    CATALOG_THRESHOLDS, Crossing, LABELS_VERSION, Label, LabelKind, Labeller, LabelsFile,
    ProfileThresholds, Threshold,
};
pub use layout::{FleetLayout, ServerSpec, composition, server_name};
pub use profiles::State;
pub use scenario::{
    CASCADE_STEPS, CRITICAL_FRESH_STEPS, CRITICAL_FROM_DEGRADING_STEPS, DEGRADING_STEPS,
    RELEASE_STEPS, Scenario, ScenarioPlan,
};

use crate::catalog::METRIC_COUNT;
use incidents::{Rates, advance_cascade};
use std::sync::Arc;
use step::{ServerState, StepContext, step_server};

/// The largest fleet the engine accepts.
pub const MAX_SERVERS: u32 = 100_000;

/// Fleets at least this large compute a step on several threads.
const PARALLEL_MIN_SERVERS: usize = 4096;

/// The ground-truth incident label of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    /// No incident.
    None,
    /// Ramping towards degraded levels.
    Degrading,
    /// Ramping towards (or at) critical levels.
    Critical,
}

impl IncidentKind {
    /// `none`, `degrading` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            IncidentKind::None => "none",
            IncidentKind::Degrading => "degrading",
            IncidentKind::Critical => "critical",
        }
    }
}

/// Why a fleet could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// Fleet size out of range.
    #[error("fleet size {0} is outside 1–{MAX_SERVERS}")]
    Servers(u32),
    /// Step length unusable.
    #[error("step of {0} s must lie in 1–86400 and divide a day")]
    Step(u32),
    /// Problem-child share out of range.
    #[error("problem child share {0} is outside 0–0.5")]
    ProblemChildShare(f64),
    /// A scenario name outside the list.
    #[error("unknown scenario `{0}`; valid: healthy, natural, degrading, critical, cascade")]
    UnknownScenario(String),
}

/// How to build a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Simulation size, 1–100,000.
    pub servers: u32,
    /// Seed: the same seed gives the same fleet and series.
    pub seed: u64,
    /// Step length in seconds.
    pub step_seconds: u32,
    /// Share of problem children.
    pub problem_child_share: f64,
    /// Start of the first step, unix ms.
    pub start_ms: i64,
    /// Scenario at the first step.
    pub scenario: Scenario,
}

impl SimConfig {
    /// A fleet of `servers` with `seed`, 300-second steps, 10 % problem children, starting
    /// Monday 2026-01-05 00:00 UTC in the `natural` scenario.
    pub fn new(servers: u32, seed: u64) -> SimConfig {
        SimConfig {
            servers,
            seed,
            step_seconds: 300,
            problem_child_share: 0.10,
            start_ms: 1_767_571_200_000,
            scenario: Scenario::Natural,
        }
    }
}

/// One server's output for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// The 14 metrics in [`Metric::ALL`](crate::catalog::Metric::ALL) order, in their units
    /// (percent, MB/s, ...); `None` while the server is OFFLINE: it reports nothing.
    pub values: Option<[f64; METRIC_COUNT]>,
    /// Markov state.
    pub state: State,
    /// Ground-truth incident label.
    pub incident: IncidentKind,
    /// Incident weight, 0–1.
    pub incident_intensity: f64,
    /// Upstream cascade envelope × strength, 0–1 (0 for sources).
    pub cascade_impact: f64,
    /// The upstream server (by index) whose cascade hits this one hardest, if any.
    pub cascade_source: Option<u32>,
}

impl Row {
    const EMPTY: Row = Row {
        values: None,
        state: State::Healthy,
        incident: IncidentKind::None,
        incident_intensity: 0.0,
        cascade_impact: 0.0,
        cascade_source: None,
    };
}

/// What changed when the scenario was set.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioChange {
    /// Scenario before.
    pub old: Scenario,
    /// Scenario now.
    pub new: Scenario,
    /// Servers the scenario drives, by index.
    pub affected: Vec<u32>,
    /// The step at which it takes effect.
    pub step: u64,
}

/// One computed step.
#[derive(Debug)]
pub struct Step<'a> {
    /// Step number from 0.
    pub index: u64,
    /// Start of the step, unix ms.
    pub ts_ms: i64,
    /// One row per server, in server order.
    pub rows: &'a [Row],
}

/// The simulated fleet.
#[derive(Debug)]
pub struct Simulation {
    layout: Arc<FleetLayout>,
    step_ms: i64,
    start_ms: i64,
    scenario: Scenario,
    affected: Vec<u32>,
    next_step: u64,
    states: Vec<ServerState>,
    rows: Vec<Row>,
    envelope: Vec<f64>,
    rates: Rates,
    labeller: Option<Labeller>,
}

impl Simulation {
    /// Builds the fleet; nothing is simulated until [`Simulation::step`].
    ///
    /// # Errors
    /// [`SimError`] naming the value out of range.
    pub fn new(config: &SimConfig) -> Result<Simulation, SimError> {
        if config.step_seconds == 0 || 86_400 % config.step_seconds != 0 {
            return Err(SimError::Step(config.step_seconds));
        }
        let layout = FleetLayout::build(config.servers, config.seed, config.problem_child_share)?;
        let hour = utc_hour(config.start_ms);
        let states = layout
            .servers
            .iter()
            .map(|spec| ServerState::new(config.seed, spec, hour))
            .collect();
        let n = layout.len();
        let mut fleet = Simulation {
            layout: Arc::new(layout),
            step_ms: i64::from(config.step_seconds) * 1000,
            start_ms: config.start_ms,
            scenario: Scenario::Natural,
            affected: Vec::new(),
            next_step: 0,
            states,
            rows: vec![Row::EMPTY; n],
            envelope: vec![0.0; n],
            rates: Rates::new(config.step_seconds),
            labeller: None,
        };
        fleet.set_scenario(config.scenario);
        Ok(fleet)
    }

    /// The fixed layout, shareable.
    pub fn layout(&self) -> &Arc<FleetLayout> {
        &self.layout
    }

    /// Every server, by index.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.layout.servers
    }

    /// The scenario in effect for the next step.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// Servers the current scenario drives.
    pub fn affected(&self) -> &[u32] {
        &self.affected
    }

    /// Records ground truth from the next step on: every episode of trouble, with the
    /// first step each of `thresholds`, lifted for the server's profile by `sigmas`
    /// ([`ProfileThresholds`]), was crossed ([`labels`]).
    pub fn record_labels(&mut self, thresholds: &[Threshold], sigmas: f64) {
        self.labeller = Some(Labeller::new(self.states.len(), thresholds, sigmas));
    }

    /// The ground truth so far, when [`Simulation::record_labels`] was called.
    pub fn labeller(&self) -> Option<&Labeller> {
        self.labeller.as_ref()
    }

    /// The ground truth so far as the file `export --labels` writes (`seed`: the fleet's;
    /// the scenario in it is the one in effect now), when [`Simulation::record_labels`] was
    /// called.
    pub fn labels_file(&self, seed: u64) -> Option<LabelsFile> {
        let labeller = self.labeller.as_ref()?;
        Some(LabelsFile {
            v: LABELS_VERSION,
            seed,
            servers: self.layout.len() as u32,
            step_seconds: (self.step_ms / 1000) as u32,
            start_ms: self.start_ms,
            steps: self.next_step,
            scenario: self.scenario,
            thresholds: labeller.thresholds().base().to_vec(),
            profile_normal_sigmas: labeller.thresholds().sigmas(),
            profile_thresholds: labeller.thresholds().lifted(),
            labels: labeller.labels(),
        })
    }

    /// The number of the next step to be computed.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// Start of step `index`, unix ms.
    pub fn step_start_ms(&self, index: u64) -> i64 {
        self.start_ms + index as i64 * self.step_ms
    }

    /// Switches the scenario from the next step on; the same scenario again changes nothing.
    pub fn set_scenario(&mut self, scenario: Scenario) -> ScenarioChange {
        let old = self.scenario;
        if scenario != old || self.next_step == 0 {
            let plan = self.layout.plan(old, scenario);
            let mut forced = vec![false; self.states.len()];
            for &index in &plan.forced {
                forced[index as usize] = true;
            }
            for (state, forced) in self.states.iter_mut().zip(forced) {
                if forced {
                    state
                        .forced
                        .retarget(1.0, plan.targets, plan.kind, plan.steps);
                    state.cascading = plan.cascading;
                } else if !state.forced.is_quiet() {
                    state.forced.release(RELEASE_STEPS);
                }
            }
            self.affected = plan.affected;
            self.scenario = scenario;
        }
        ScenarioChange {
            old,
            new: scenario,
            affected: self.affected.clone(),
            step: self.next_step,
        }
    }

    /// Computes the next step for every server.
    pub fn step(&mut self) -> Step<'_> {
        let index = self.next_step;
        let ts_ms = self.step_start_ms(index);
        let hour = utc_hour(ts_ms);
        let scenario = self.scenario;
        let rates = self.rates;
        let specs = &self.layout.servers;
        // Phase 1, sequential and cheap: scenario ramps and cascade sources, whose envelopes
        // every dependent reads in phase 2.
        for ((spec, state), envelope) in specs.iter().zip(&mut self.states).zip(&mut self.envelope)
        {
            state.forced.advance();
            let natural = if profiles::is_upstream(spec.profile) {
                advance_cascade(spec, state, scenario, hour, &rates)
            } else {
                0.0
            };
            let forced = if state.cascading {
                state.forced.now().0
            } else {
                0.0
            };
            *envelope = natural.max(forced);
        }
        // Phase 2: every server on its own, in parallel for big fleets.
        let context = StepContext {
            hour,
            scenario,
            rates,
            envelope: &self.envelope,
        };
        let n = specs.len();
        let threads = if n >= PARALLEL_MIN_SERVERS {
            std::thread::available_parallelism().map_or(1, |count| count.get().min(16))
        } else {
            1
        };
        if threads <= 1 {
            for ((spec, state), row) in specs.iter().zip(&mut self.states).zip(&mut self.rows) {
                step_server(spec, state, &context, row);
            }
        } else {
            let chunk = n.div_ceil(threads);
            std::thread::scope(|scope| {
                for ((specs, states), rows) in specs
                    .chunks(chunk)
                    .zip(self.states.chunks_mut(chunk))
                    .zip(self.rows.chunks_mut(chunk))
                {
                    let context = &context;
                    scope.spawn(move || {
                        for ((spec, state), row) in specs.iter().zip(states).zip(rows) {
                            step_server(spec, state, context, row);
                        }
                    });
                }
            });
        }
        if let Some(labeller) = &mut self.labeller {
            labeller.observe(index, ts_ms, specs, &self.rows);
        }
        self.next_step += 1;
        Step {
            index,
            ts_ms,
            rows: &self.rows,
        }
    }
}

pub use crate::catalog::utc_hour;
