//! The alert state machine: one value climbing and descending a ladder of thresholds, with
//! hysteresis and a minimum dwell, timed by the messages' own timestamps (simulated time),
//! never the wall clock.
//!
//! Level 0 is "no alert"; level `i ≥ 1` begins at `thresholds[i − 1]`. For every level the
//! ladder remembers since when the value has been continuously **at or above** its threshold
//! and since when it has been continuously **below its threshold minus the hysteresis**.
//! On each observation:
//!
//! 1. **Up**: once the value has been at or above the *next* level's threshold for
//!    `raise_after`, the ladder enters the highest level whose threshold the value stands at
//!    now (one event, even when it skips levels). So a value that climbs 25 → 59.5 raises
//!    straight to warning when the watch wait completes, instead of raising at watch with
//!    59.5 in hand and escalating one observation later (issue 11); a lone spike still
//!    cannot move the ladder before the next level has held.
//! 2. **Down**, only when not going up: the lowest level `d` below the current one such that
//!    "below threshold − hysteresis" of level `d + 1` has lasted `dwell` is entered (a value
//!    below a lower level's band is also below every higher band, so one test covers all).
//!
//! So a value hovering around a threshold rises once and stays up: it must drop
//! `hysteresis` under the threshold and stay there for `dwell` before the alert steps down,
//! and a swing back over the band restarts that wait.

/// How a ladder moves.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderConfig {
    /// Lowest value of levels 1, 2, ..., strictly increasing.
    pub thresholds: Vec<f64>,
    /// How far below a threshold the value must fall to count as having left that level.
    pub hysteresis: f64,
    /// Milliseconds the value must stay below a band before the ladder steps down.
    pub dwell_ms: i64,
    /// Milliseconds the value must stay at or above a higher threshold before rising to it.
    pub raise_after_ms: i64,
}

/// A change of level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Level before.
    pub from: usize,
    /// Level after.
    pub to: usize,
    /// When, unix ms (the observation's time).
    pub at_ms: i64,
    /// When the ladder entered `from`, unix ms.
    pub from_since_ms: i64,
    /// When the ladder left level 0 (the alert opened), unix ms; for a rise from 0 that is
    /// `at_ms`.
    pub opened_ms: i64,
}

/// An observation older than the ladder's latest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("observation at {at_ms} ms is older than the latest at {latest_ms} ms")]
pub struct OutOfOrder {
    /// The refused observation's time.
    pub at_ms: i64,
    /// The latest accepted time.
    pub latest_ms: i64,
    /// The latest time was read back from the alert history at start-up, not observed
    /// since: the refused observation was routed before the restart.
    pub restored: bool,
}

/// One value's position on its ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    level: usize,
    entered_ms: i64,
    opened_ms: Option<i64>,
    latest_ms: Option<i64>,
    /// Per level 1..=n (index 0 unused): since when the value is at or above its threshold.
    above_since: Vec<Option<i64>>,
    /// Per level 1..=n: since when the value is below its threshold minus the hysteresis.
    below_since: Vec<Option<i64>>,
    /// Put back from the history and not moved since.
    restored: bool,
}

impl Ladder {
    /// A ladder at level 0 for `config`.
    pub fn new(config: &LadderConfig) -> Ladder {
        let levels = config.thresholds.len() + 1;
        Ladder {
            level: 0,
            entered_ms: i64::MIN,
            opened_ms: None,
            latest_ms: None,
            above_since: vec![None; levels],
            below_since: vec![None; levels],
            restored: false,
        }
    }

    /// A ladder put back at `level`, entered at `entered_ms`, whose alert opened at
    /// `opened_ms` (rebuilt from the alert history after a restart). Observations older than
    /// `entered_ms` are refused; the raise and dwell waits start afresh.
    pub fn restored(
        config: &LadderConfig,
        level: usize,
        entered_ms: i64,
        opened_ms: i64,
    ) -> Ladder {
        let level = level.min(config.thresholds.len());
        Ladder {
            level,
            entered_ms,
            opened_ms: (level > 0).then_some(opened_ms),
            latest_ms: Some(entered_ms),
            restored: true,
            ..Ladder::new(config)
        }
    }

    /// The current level (0 = no alert).
    pub fn level(&self) -> usize {
        self.level
    }

    /// When the open alert opened, if one is open.
    pub fn opened_ms(&self) -> Option<i64> {
        self.opened_ms
    }

    /// When the current level was entered (the first observation's time for level 0).
    pub fn entered_ms(&self) -> i64 {
        self.entered_ms
    }

    /// Feeds one observation of `value` at `at_ms`; returns the change of level, if any.
    ///
    /// # Errors
    /// [`OutOfOrder`] when `at_ms` is older than the latest observation (equal is fine:
    /// a new forecast re-scores the same sample).
    pub fn observe(
        &mut self,
        config: &LadderConfig,
        value: f64,
        at_ms: i64,
    ) -> Result<Option<Transition>, OutOfOrder> {
        if let Some(latest_ms) = self.latest_ms {
            if at_ms < latest_ms {
                return Err(OutOfOrder {
                    at_ms,
                    latest_ms,
                    restored: self.restored,
                });
            }
        } else {
            self.entered_ms = at_ms;
        }
        self.latest_ms = Some(at_ms);
        self.restored = false;
        for (index, &threshold) in config.thresholds.iter().enumerate() {
            let level = index + 1;
            self.above_since[level] = if value >= threshold {
                Some(self.above_since[level].unwrap_or(at_ms))
            } else {
                None
            };
            self.below_since[level] = if value < threshold - config.hysteresis {
                Some(self.below_since[level].unwrap_or(at_ms))
            } else {
                None
            };
        }
        let held =
            |since: Option<i64>, needed: i64| since.is_some_and(|since| at_ms - since >= needed);
        let next = self.level + 1;
        let up = (next <= config.thresholds.len()
            && held(self.above_since[next], config.raise_after_ms))
        .then(|| {
            (next..=config.thresholds.len())
                .rev()
                .find(|&level| self.above_since[level].is_some())
                .unwrap_or(next)
        });
        let target = up.or_else(|| {
            (0..self.level).find(|&level| held(self.below_since[level + 1], config.dwell_ms))
        });
        let Some(to) = target else {
            return Ok(None);
        };
        let from = self.level;
        let opened_ms = if from == 0 {
            at_ms
        } else {
            self.opened_ms.unwrap_or(at_ms)
        };
        let transition = Transition {
            from,
            to,
            at_ms,
            from_since_ms: self.entered_ms,
            opened_ms,
        };
        self.level = to;
        self.entered_ms = at_ms;
        self.opened_ms = (to > 0).then_some(opened_ms);
        Ok(Some(transition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn config() -> LadderConfig {
        LadderConfig {
            thresholds: vec![20.0, 40.0, 70.0],
            hysteresis: 5.0,
            dwell_ms: 15 * MIN,
            raise_after_ms: 5 * MIN,
        }
    }

    /// Feeds one value per 5 minutes and returns the (step, from, to) of every transition.
    fn run(config: &LadderConfig, values: &[f64]) -> Vec<(usize, usize, usize)> {
        let mut ladder = Ladder::new(config);
        values
            .iter()
            .enumerate()
            .filter_map(|(step, &value)| {
                ladder
                    .observe(config, value, step as i64 * 5 * MIN)
                    .unwrap()
                    .map(|t| (step, t.from, t.to))
            })
            .collect()
    }

    /// A value oscillating around the warning threshold (within the hysteresis) rises once
    /// and never flaps.
    #[test]
    fn oscillation_around_a_threshold_raises_once() {
        let values: Vec<f64> = (0..60)
            .map(|i| if i % 2 == 0 { 42.0 } else { 37.0 })
            .collect();
        // Step 0: 42 → watch and warning start; step 1: 37 < 40 resets warning but watch
        // (≥20) has held 5 min → raise to watch. Warning is never held 5 min in a row.
        assert_eq!(run(&config(), &values), vec![(1, 0, 1)]);
        let values: Vec<f64> = (0..60)
            .map(|i| if i % 3 == 2 { 38.0 } else { 44.0 })
            .collect();
        // 44, 44 → warning at step 1; then 38 (> 35) never counts as below warning.
        assert_eq!(run(&config(), &values), vec![(1, 0, 2)]);
    }

    /// A swing wider than the hysteresis but shorter than the dwell does not step down.
    #[test]
    fn short_dips_below_the_band_do_not_step_down() {
        // 50 for two steps (warning), then 30 / 50 alternating: each dip lasts 5 min < 15.
        let mut values = vec![50.0, 50.0];
        values.extend((0..40).map(|i| if i % 2 == 0 { 30.0 } else { 50.0 }));
        assert_eq!(run(&config(), &values), vec![(1, 0, 2)]);
    }

    /// Raise, escalate, de-escalate and resolve come in order, each after its wait.
    #[test]
    fn full_life_in_order() {
        let mut values = vec![25.0, 25.0]; // watch after 5 min
        values.extend([75.0, 75.0]); // critical after 5 more
        values.extend([50.0; 4]); // below 65 for 15 min → warning at the 4th
        values.extend([10.0; 4]); // below 35 and 15 for 15 min → healthy at the 4th
        assert_eq!(
            run(&config(), &values),
            vec![(1, 0, 1), (3, 1, 3), (7, 3, 2), (11, 2, 0)]
        );
    }

    /// Issue 11: a value that jumps from the watch band to 59.5 as the watch wait completes
    /// raises once, at warning (it used to raise at watch and escalate one step later).
    #[test]
    fn a_jump_into_a_higher_band_raises_once_at_that_band() {
        assert_eq!(run(&config(), &[25.0, 59.5, 59.5, 59.5]), vec![(1, 0, 2)]);
        // From an open watch alert, a jump to 80 escalates once the next level (warning)
        // has held, straight to critical.
        assert_eq!(
            run(&config(), &[25.0, 25.0, 80.0, 80.0, 80.0]),
            vec![(1, 0, 1), (3, 1, 3)]
        );
        // A lone spike moves nothing.
        assert_eq!(run(&config(), &[10.0, 90.0, 10.0, 10.0]), vec![]);
    }

    /// Dropping from critical straight to calm resolves in one event after the dwell.
    #[test]
    fn multi_level_drop_is_one_event() {
        let mut values = vec![80.0, 80.0];
        values.extend([0.0; 4]);
        assert_eq!(run(&config(), &values), vec![(1, 0, 3), (5, 3, 0)]);
    }

    /// With raise_after 0 the first observation raises; transitions carry the times.
    #[test]
    fn immediate_raise_and_times() {
        let config = LadderConfig {
            raise_after_ms: 0,
            ..config()
        };
        let mut ladder = Ladder::new(&config);
        assert_eq!(ladder.observe(&config, 5.0, 1_000).unwrap(), None);
        let raise = ladder.observe(&config, 45.0, 61_000).unwrap().unwrap();
        assert_eq!(
            (raise.from, raise.to, raise.opened_ms, raise.from_since_ms),
            (0, 2, 61_000, 1_000)
        );
        let escalate = ladder.observe(&config, 90.0, 121_000).unwrap().unwrap();
        assert_eq!(
            (escalate.to, escalate.opened_ms, escalate.from_since_ms),
            (3, 61_000, 61_000)
        );
        assert_eq!(ladder.opened_ms(), Some(61_000));
        // Same time again is accepted, older is refused.
        assert_eq!(ladder.observe(&config, 90.0, 121_000).unwrap(), None);
        assert!(ladder.observe(&config, 90.0, 100_000).is_err());
    }
}
