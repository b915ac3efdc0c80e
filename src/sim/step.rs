//! One server's step: draw, scale and smooth every metric, apply cascades and incident
//! forcing, derive cpu_idle, then bound and round.

use super::incidents::{CascadeEvent, Phase, Ramp, Rates, advance_incident};
use super::layout::{Purpose, ServerSpec, stream};
use super::profiles::{self, FORCED, IDLE, IOWAIT, SYS, State, UPTIME, USER};
use super::{Row, Scenario};
use crate::catalog::{METRIC_COUNT, Metric, MetricKind, Profile};
use rand::RngExt;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

/// One server's changing state.
#[derive(Debug, Clone)]
pub(super) struct ServerState {
    pub(super) values_rng: Pcg64Mcg,
    pub(super) markov_rng: Pcg64Mcg,
    pub(super) incident_rng: Pcg64Mcg,
    pub(super) cascade_rng: Pcg64Mcg,
    pub(super) state: State,
    /// AR(1) state per metric (fractions for percentages).
    pub(super) ar: [f64; METRIC_COUNT],
    /// Noise-free AR(1) level of the forced metrics, so forcing keeps the noise.
    pub(super) level: [f64; 3],
    /// Days since the (simulated) last boot. OFFLINE does not reset it: at one Markov
    /// step per 5 minutes a server goes OFFLINE several times a day for a few minutes (the
    /// original's matrix is per 5-second tick), which reads as the host not reporting, not as
    /// a reboot; resetting it there held uptime_days at 0 in `natural` and near 25 in
    /// `healthy`, a feature that told the model the scenario.
    pub(super) uptime: f64,
    pub(super) natural: Ramp,
    pub(super) phase: Phase,
    pub(super) forced: Ramp,
    /// Whether `forced` is a `cascade` source's forcing, which its dependents feel.
    pub(super) cascading: bool,
    pub(super) cascade: Option<CascadeEvent>,
}

impl ServerState {
    /// Server `spec`'s state before its first step at UTC `hour`: every metric at its
    /// profile's mean under the diurnal curve, healthy, no incident.
    pub(super) fn new(seed: u64, spec: &ServerSpec, hour: u32) -> ServerState {
        let base = profiles::baseline(spec.profile);
        let diurnal = spec.profile.diurnal(hour);
        let mut ar = [0.0; METRIC_COUNT];
        for (m, value) in ar.iter_mut().enumerate() {
            *value = base.mean[m] * profiles::diurnal_of(m, diurnal);
        }
        let mut values_rng = stream(seed, spec, Purpose::Values);
        let z: f64 = values_rng.sample(StandardNormal);
        ServerState {
            values_rng,
            markov_rng: stream(seed, spec, Purpose::Markov),
            incident_rng: stream(seed, spec, Purpose::Incidents),
            cascade_rng: stream(seed, spec, Purpose::Cascades),
            state: State::Healthy,
            ar,
            level: FORCED.map(|m| ar[m]),
            uptime: (base.mean[UPTIME] + base.std[UPTIME] * z).clamp(0.0, 30.0),
            natural: Ramp::QUIET,
            phase: Phase::Quiet,
            forced: Ramp::QUIET,
            cascading: false,
            cascade: None,
        }
    }
}

/// What every server's step shares: the hour, the scenario, the rates and the upstream
/// cascade envelopes.
pub(super) struct StepContext<'a> {
    pub(super) hour: u32,
    pub(super) scenario: Scenario,
    pub(super) rates: Rates,
    pub(super) envelope: &'a [f64],
}

/// Computes one server's row for one step.
pub(super) fn step_server(
    spec: &ServerSpec,
    state: &mut ServerState,
    context: &StepContext,
    row: &mut Row,
) {
    let markov: f64 = state.markov_rng.random();
    state.state = if context.scenario == Scenario::Healthy {
        State::Healthy
    } else {
        state.state.next(context.hour, spec.problem_child, markov)
    };
    advance_incident(spec, state, context);

    // Draw, scale, smooth.
    let base = profiles::baseline(spec.profile);
    let multipliers = state.state.multipliers();
    let diurnal = spec.profile.diurnal(context.hour);
    for (m, ar) in state.ar.iter_mut().enumerate() {
        // Two draws per metric whatever happens next, so the stream never shifts.
        let z: f64 = state.values_rng.sample(StandardNormal);
        let noise: f64 = state.values_rng.sample(StandardNormal);
        if m == IDLE || m == UPTIME {
            continue;
        }
        let factor = multipliers[m] * profiles::diurnal_of(m, diurnal);
        let x = (base.mean[m] + base.std[m] * z) * factor;
        *ar = 0.85 * *ar + 0.15 * x + 0.1 * base.std[m] * noise;
    }
    for (slot, &m) in FORCED.iter().enumerate() {
        state.level[slot] = 0.85 * state.level[slot]
            + 0.15 * base.mean[m] * multipliers[m] * profiles::diurnal_of(m, diurnal);
    }

    // Cascade effects from upstream servers.
    let mut values = state.ar;
    let mut cascade_impact: f64 = 0.0;
    let mut cascade_source = None;
    for dependency in &spec.upstreams {
        let envelope = context.envelope[dependency.upstream as usize];
        if envelope <= 0.0 {
            continue;
        }
        for &(impact, strength) in dependency.impacts {
            let k = envelope * strength;
            for &(m, multiplier, add) in impact.effects() {
                values[m] = values[m] * (1.0 + (multiplier - 1.0) * k) + add * k;
            }
        }
        if envelope * dependency.strength > cascade_impact {
            cascade_impact = envelope * dependency.strength;
            cascade_source = Some(dependency.upstream);
        }
    }

    // Incident forcing: the stronger of the natural incident and the scenario.
    let natural = state.natural.now();
    let forced = state.forced.now();
    let (weight, targets, kind) = if forced.0 >= natural.0 {
        forced
    } else {
        natural
    };
    if weight > 0.0 {
        for (slot, &m) in FORCED.iter().enumerate() {
            if m == IOWAIT && spec.profile != Profile::Database {
                continue;
            }
            values[m] += weight * (targets.get(slot) - state.level[slot]);
        }
    }

    // CPU components share 100 %: idle is what the others leave.
    for m in [USER, SYS, IOWAIT] {
        values[m] = values[m].max(0.0);
    }
    let busy = values[USER] + values[SYS] + values[IOWAIT];
    if busy > 1.0 {
        for m in [USER, SYS, IOWAIT] {
            values[m] /= busy;
        }
    }
    values[IDLE] = (1.0 - busy).max(0.0);

    values[UPTIME] = state.uptime.min(30.0);
    state.uptime += context.rates.days_per_step;
    row.values = if state.state == State::Offline {
        // An offline server reports nothing (the original wrote zeros, which read as
        // cpu_idle 0 %: busy 100 %).
        None
    } else {
        let mut out = [0.0; METRIC_COUNT];
        for (out, (metric, value)) in out.iter_mut().zip(Metric::ALL.iter().zip(values)) {
            *out = finish(*metric, value);
        }
        Some(out)
    };
    row.state = state.state;
    row.incident = kind;
    row.incident_intensity = weight.clamp(0.0, 1.0);
    row.cascade_impact = cascade_impact.clamp(0.0, 1.0);
    row.cascade_source = cascade_source;
}

/// Bounds and rounding of an output value.
pub(super) fn finish(metric: Metric, value: f64) -> f64 {
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    match metric.kind() {
        MetricKind::Percent => round2((value * 100.0).clamp(0.0, 100.0)),
        MetricKind::Rate | MetricKind::Load => round2(value.max(0.0)),
        MetricKind::Count => value.round().max(0.0),
        MetricKind::Days => value.floor().clamp(0.0, 30.0),
    }
}
