//! Natural incidents and cascades: the ramps that move a server's forced metrics towards
//! degraded or critical targets and back, and the per-step chances of starting one.

use super::layout::ServerSpec;
use super::profiles::{CRITICAL, DEGRADING, Targets};
use super::step::{ServerState, StepContext};
use super::{IncidentKind, RELEASE_STEPS, Scenario};
use rand::RngExt;

/// A linear move of an incident's forcing from one (weight, targets) to another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ramp {
    pub(super) from_w: f64,
    pub(super) from_t: Targets,
    pub(super) from_kind: IncidentKind,
    pub(super) to_w: f64,
    pub(super) to_t: Targets,
    pub(super) to_kind: IncidentKind,
    pub(super) steps: u32,
    pub(super) done: u32,
}

impl Ramp {
    pub(super) const QUIET: Ramp = Ramp {
        from_w: 0.0,
        from_t: DEGRADING,
        from_kind: IncidentKind::None,
        to_w: 0.0,
        to_t: DEGRADING,
        to_kind: IncidentKind::None,
        steps: 0,
        done: 0,
    };

    /// Weight, targets and label now.
    pub(super) fn now(&self) -> (f64, Targets, IncidentKind) {
        let p = if self.steps == 0 {
            1.0
        } else {
            f64::from(self.done) / f64::from(self.steps)
        };
        let w = self.from_w + (self.to_w - self.from_w) * p;
        let targets = if self.from_w <= 0.0 {
            self.to_t
        } else if self.to_w <= 0.0 {
            self.from_t
        } else {
            self.from_t.lerp(&self.to_t, p)
        };
        let kind = if w <= 0.0 {
            IncidentKind::None
        } else if self.to_w > 0.0 {
            self.to_kind
        } else {
            self.from_kind
        };
        (w, targets, kind)
    }

    pub(super) fn retarget(&mut self, to_w: f64, to_t: Targets, to_kind: IncidentKind, steps: u32) {
        let (from_w, from_t, from_kind) = self.now();
        *self = Ramp {
            from_w,
            from_t,
            from_kind,
            to_w,
            to_t,
            to_kind,
            steps,
            done: 0,
        };
    }

    pub(super) fn release(&mut self, steps: u32) {
        let (_, targets, kind) = self.now();
        self.retarget(0.0, targets, kind, steps);
    }

    pub(super) fn advance(&mut self) {
        if self.done < self.steps {
            self.done += 1;
        }
    }

    pub(super) fn settled(&self) -> bool {
        self.done >= self.steps
    }

    pub(super) fn is_quiet(&self) -> bool {
        self.to_w <= 0.0 && (self.settled() || self.from_w <= 0.0)
    }
}

/// Where a server's natural incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Quiet,
    DegradingRamp,
    CriticalRamp,
    Releasing,
}

/// A natural cascade started by an upstream server. Its lengths are in steps, converted
/// from the original's 5-second ticks ([`Rates::ticks`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CascadeEvent {
    pub(super) age: u32,
    pub(super) duration: u32,
    pub(super) ramp_up: f64,
    pub(super) ramp_down: f64,
}

impl CascadeEvent {
    /// The original's ramp-up, in 5-second ticks (2 minutes).
    pub(super) const RAMP_UP_TICKS: u32 = 24;
    /// The original's ramp-down, in 5-second ticks (3 minutes).
    pub(super) const RAMP_DOWN_TICKS: u32 = 36;
    /// The original's duration range, in 5-second ticks (5–60 minutes).
    pub(super) const DURATION_TICKS: std::ops::RangeInclusive<u32> = 60..=720;

    pub(super) fn envelope(&self) -> f64 {
        let up = f64::from(self.age + 1) / self.ramp_up;
        let down = f64::from(self.duration - self.age) / self.ramp_down;
        up.min(down).clamp(0.0, 1.0)
    }
}

/// Per-step probabilities and ramp lengths, derived from the step length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rates {
    pub(super) degrading_start: f64,
    pub(super) critical_start_inside: f64,
    pub(super) critical_start_outside: f64,
    pub(super) cascade_start: f64,
    pub(super) degrading_ramp: u32,
    pub(super) degrading_release: u32,
    pub(super) critical_ramp: u32,
    pub(super) critical_release: u32,
    pub(super) days_per_step: f64,
    /// Steps per 5-second tick of the original, which counted cascades in ticks.
    pub(super) steps_per_tick: f64,
}

impl Rates {
    pub(super) fn new(step_seconds: u32) -> Rates {
        let step = f64::from(step_seconds);
        let week = 7.0 * 86_400.0;
        let steps = |hours: f64| ((hours * 3600.0 / step).round() as u32).max(1);
        let degrading_ramp = steps(2.0);
        // Share of time an incident-prone server spends in a degrading ramp: 60 % of the
        // critical starts fall in it, 40 % outside.
        let inside = (4.0 * f64::from(degrading_ramp) * step / week).min(0.5);
        let critical = 1.5 * step / week;
        Rates {
            degrading_start: 4.0 * step / week,
            critical_start_inside: 0.6 * critical / inside,
            critical_start_outside: 0.4 * critical / (1.0 - inside),
            cascade_start: 0.15 * step / 86_400.0,
            degrading_ramp,
            degrading_release: steps(0.5),
            critical_ramp: steps(0.5),
            critical_release: steps(1.0),
            days_per_step: step / 86_400.0,
            steps_per_tick: 5.0 / step,
        }
    }
}

/// Moves an upstream server's natural cascade on by one step; returns its envelope.
pub(super) fn advance_cascade(
    spec: &ServerSpec,
    state: &mut ServerState,
    scenario: Scenario,
    hour: u32,
    rates: &Rates,
) -> f64 {
    let u: f64 = state.cascade_rng.random();
    if scenario == Scenario::Healthy {
        state.cascade = None;
        return 0.0;
    }
    match &mut state.cascade {
        Some(event) => {
            event.age += 1;
            if event.age >= event.duration {
                state.cascade = None;
            }
        }
        None => {
            // 60 % of starts in 09–17 h (a third of the day).
            let hour_weight = if (9..17).contains(&hour) { 1.8 } else { 0.6 };
            let child = if spec.problem_child { 1.5 } else { 1.0 };
            if u < rates.cascade_start * hour_weight * child {
                // The original's durations are 5-second ticks: time, not steps (read as
                // steps they lasted 5–60 h and kept dependents under a cascade 15–37 % of
                // the time).
                let ticks = state.cascade_rng.random_range(CascadeEvent::DURATION_TICKS);
                let in_steps = |ticks: u32| f64::from(ticks) * rates.steps_per_tick;
                state.cascade = Some(CascadeEvent {
                    age: 0,
                    duration: (in_steps(ticks).ceil() as u32).max(1),
                    ramp_up: in_steps(CascadeEvent::RAMP_UP_TICKS).max(1e-9),
                    ramp_down: in_steps(CascadeEvent::RAMP_DOWN_TICKS).max(1e-9),
                });
            }
        }
    }
    state.cascade.map_or(0.0, |event| event.envelope())
}

/// Moves a server's natural incident on by one step.
pub(super) fn advance_incident(spec: &ServerSpec, state: &mut ServerState, context: &StepContext) {
    let u: f64 = state.incident_rng.random();
    let rates = &context.rates;
    let natural = &mut state.natural;
    if context.scenario == Scenario::Healthy {
        if matches!(state.phase, Phase::DegradingRamp | Phase::CriticalRamp) {
            natural.release(RELEASE_STEPS);
            state.phase = Phase::Releasing;
        }
    } else if spec.incident_prone {
        match state.phase {
            Phase::Quiet => {
                // 70 % of degrading starts in 08–18 h (10 of 24 hours).
                let hour_weight = if (8..18).contains(&context.hour) {
                    0.7 * 24.0 / 10.0
                } else {
                    0.3 * 24.0 / 14.0
                };
                let critical = rates.critical_start_outside;
                if u < critical {
                    natural.retarget(1.0, CRITICAL, IncidentKind::Critical, rates.critical_ramp);
                    state.phase = Phase::CriticalRamp;
                } else if u < critical + rates.degrading_start * hour_weight {
                    natural.retarget(
                        1.0,
                        DEGRADING,
                        IncidentKind::Degrading,
                        rates.degrading_ramp,
                    );
                    state.phase = Phase::DegradingRamp;
                }
            }
            Phase::DegradingRamp => {
                if u < rates.critical_start_inside {
                    natural.retarget(1.0, CRITICAL, IncidentKind::Critical, rates.critical_ramp);
                    state.phase = Phase::CriticalRamp;
                } else if natural.settled() {
                    natural.release(rates.degrading_release);
                    state.phase = Phase::Releasing;
                }
            }
            Phase::CriticalRamp => {
                if natural.settled() {
                    natural.release(rates.critical_release);
                    state.phase = Phase::Releasing;
                }
            }
            Phase::Releasing => {}
        }
    }
    if state.phase == Phase::Releasing && natural.settled() {
        state.phase = Phase::Quiet;
        *natural = Ramp::QUIET;
    }
    natural.advance();
}
