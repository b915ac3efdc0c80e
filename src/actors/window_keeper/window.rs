//! One server's bounded window: step aggregation, gaps and warm-up, with no I/O.
//!
//! Samples are bucketed by step (`ts / step_seconds`). The newest bucket is the *open* step:
//! its samples are summed per metric. When a sample for a later step arrives, the open step
//! *closes*: each metric becomes the mean of its samples in that step, or **NaN** when it had
//! none. Steps with no sample at all between the closed step and the new one are *gap steps*:
//! NaN for every metric. Nothing is ever carried forward or made up: the model reads NaN as
//! "not observed" and forecasts from what was.
//!
//! A metric is *forecastable* once the window holds at least `min_observed` steps in which it
//! was measured; the window keeps that count per metric as steps enter and leave the ring. A
//! server is ready for its first forecast as soon as one metric is forecastable, with however
//! many (at most `context`) steps it has; steps before its first sample read as NaN.
//!
//! Memory is fixed at creation: `context_steps × 14` `f32` values plus one `u16` mask word per
//! step, so a server costs the same whether it has sent one sample or a million.

use crate::catalog::{METRIC_COUNT, Metric, Profile};
use crate::samples::MetricMask;

/// What happened to the window when a sample was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Added {
    /// Whether the sample closed the previously open step.
    pub closed_step: bool,
    /// Gap steps pushed after the closed step (steps with no sample at all).
    pub gap_steps: u64,
}

/// The sample is older than the open step: that step's predecessors are closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder {
    /// The open step the sample was older than.
    pub open_step: i64,
}

/// One server's window of closed steps plus its open step.
#[derive(Debug, Clone)]
pub struct ServerWindow {
    /// The server's profile: the last one it sent, else inferred from its name.
    pub profile: Profile,
    /// Closed steps' values, a ring of `context × 14`; slot `i` holds `values[i*14..][..14]`,
    /// NaN where the metric was not measured in that step.
    values: Box<[f32]>,
    /// Per ring slot, bit `m` set when metric `m` was measured in that step.
    measured: Box<[MetricMask]>,
    /// Per metric, the closed steps held in which it was measured.
    observed: [u16; METRIC_COUNT],
    /// Closed steps held, at most the context.
    filled: usize,
    /// Ring slot the next closed step is written to.
    head: usize,
    /// The open step, `None` before the first sample.
    open_step: Option<i64>,
    /// Per metric, sum of the open step's samples.
    open_sum: [f64; METRIC_COUNT],
    /// Per metric, number of the open step's samples.
    open_count: [u32; METRIC_COUNT],
}

impl ServerWindow {
    /// An empty window; allocates its full capacity now. The context is at most 10,000 steps
    /// (the settings' bound), so a per-metric count fits a `u16`.
    pub fn new(profile: Profile, context_steps: usize) -> Self {
        let context = context_steps.clamp(1, usize::from(u16::MAX));
        Self {
            profile,
            values: vec![f32::NAN; context * METRIC_COUNT].into_boxed_slice(),
            measured: vec![0; context].into_boxed_slice(),
            observed: [0; METRIC_COUNT],
            filled: 0,
            head: 0,
            open_step: None,
            open_sum: [0.0; METRIC_COUNT],
            open_count: [0; METRIC_COUNT],
        }
    }

    /// Closed steps the window holds when full.
    pub fn capacity(&self) -> usize {
        self.measured.len()
    }

    /// Closed steps held now.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The open step, if any sample arrived.
    pub fn open_step(&self) -> Option<i64> {
        self.open_step
    }

    /// The newest closed step (the one before the open step), if any step closed.
    pub fn newest_closed_step(&self) -> Option<i64> {
        match (self.filled, self.open_step) {
            (0, _) | (_, None) => None,
            (_, Some(open)) => Some(open - 1),
        }
    }

    /// Closed steps held in which `metric` was measured.
    pub fn observed(&self, metric: Metric) -> usize {
        usize::from(self.observed[metric.index()])
    }

    /// The most observed steps of any metric: the server's history length, gaps aside.
    pub fn observed_most(&self) -> usize {
        usize::from(self.observed.iter().copied().max().unwrap_or(0))
    }

    /// Metrics measured in at least `min_observed` of the closed steps held.
    pub fn forecastable(&self, min_observed: usize) -> MetricMask {
        self.observed
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0 && usize::from(count) >= min_observed)
            .fold(0, |mask, (metric, _)| mask | (1 << metric))
    }

    /// Whether some metric is forecastable: time for a predict job when a step closes.
    pub fn is_ready(&self, min_observed: usize) -> bool {
        self.forecastable(min_observed) != 0
    }

    /// Whether a sample of `step` may be added (it is not older than the open step).
    ///
    /// # Errors
    /// [`OutOfOrder`] when the sample's step is before the open step.
    pub fn check_order(&self, step: i64) -> Result<(), OutOfOrder> {
        match self.open_step {
            Some(open_step) if step < open_step => Err(OutOfOrder { open_step }),
            _ => Ok(()),
        }
    }

    /// Adds one sample of `step`: `values[m]` counts when bit `m` of `present` is set.
    /// Values must already be validated (finite, in range).
    ///
    /// # Errors
    /// [`OutOfOrder`] when the step is before the open step (the window is untouched).
    pub fn add(
        &mut self,
        step: i64,
        values: &[f64; METRIC_COUNT],
        present: MetricMask,
    ) -> Result<Added, OutOfOrder> {
        self.check_order(step)?;
        let mut added = Added::default();
        match self.open_step {
            Some(open_step) if step > open_step => {
                self.close_open_step();
                let missing = step - open_step - 1;
                // A gap longer than the window only needs to overwrite the window once.
                let pushed = missing.min(self.capacity() as i64);
                for _ in 0..pushed {
                    self.push_step([f32::NAN; METRIC_COUNT], 0);
                }
                added = Added {
                    closed_step: true,
                    gap_steps: missing as u64,
                };
                self.open_step = Some(step);
            }
            Some(_) => {}
            None => self.open_step = Some(step),
        }
        let open = self.open_sum.iter_mut().zip(&mut self.open_count);
        for (metric, ((sum, count), value)) in open.zip(values).enumerate() {
            if present & (1 << metric) != 0 {
                *sum += value;
                *count += 1;
            }
        }
        Ok(added)
    }

    /// Closes the open step into the ring: means where measured, NaN elsewhere.
    fn close_open_step(&mut self) {
        let mut step_values = [f32::NAN; METRIC_COUNT];
        let mut measured = 0;
        for (metric, step_value) in step_values.iter_mut().enumerate() {
            let count = self.open_count[metric];
            if count > 0 {
                *step_value = (self.open_sum[metric] / f64::from(count)) as f32;
                measured |= 1 << metric;
            }
        }
        self.open_sum = [0.0; METRIC_COUNT];
        self.open_count = [0; METRIC_COUNT];
        self.push_step(step_values, measured);
    }

    fn push_step(&mut self, step_values: [f32; METRIC_COUNT], measured: MetricMask) {
        let slot = self.head;
        let leaving = if self.filled == self.capacity() {
            self.measured[slot]
        } else {
            0
        };
        for (metric, count) in self.observed.iter_mut().enumerate() {
            let bit = 1 << metric;
            *count = *count - u16::from(leaving & bit != 0) + u16::from(measured & bit != 0);
        }
        self.values[slot * METRIC_COUNT..(slot + 1) * METRIC_COUNT].copy_from_slice(&step_values);
        self.measured[slot] = measured;
        self.head = (self.head + 1) % self.capacity();
        self.filled = (self.filled + 1).min(self.capacity());
    }

    /// Ring slots of the closed steps, oldest first.
    fn slots_oldest_first(&self) -> impl Iterator<Item = usize> + '_ {
        let capacity = self.capacity();
        let oldest = (self.head + capacity - self.filled) % capacity;
        (0..self.filled).map(move |offset| (oldest + offset) % capacity)
    }

    /// Appends the closed steps' values to `out`, step-major (`[step * 14 + metric]`),
    /// oldest first, NaN where not measured.
    pub fn values_into(&self, out: &mut Vec<f32>) {
        out.reserve(self.filled * METRIC_COUNT);
        for slot in self.slots_oldest_first() {
            out.extend_from_slice(&self.values[slot * METRIC_COUNT..(slot + 1) * METRIC_COUNT]);
        }
    }

    /// Appends one metric's full context to `out`, oldest first: NaN for the steps before the
    /// window's first closed step and for steps the metric was not measured in.
    pub fn series_into(&self, metric: Metric, out: &mut Vec<f32>) {
        let column = metric.index();
        out.reserve(self.capacity());
        out.extend(std::iter::repeat_n(f32::NAN, self.capacity() - self.filled));
        out.extend(
            self.slots_oldest_first()
                .map(|slot| self.values[slot * METRIC_COUNT + column]),
        );
    }

    /// The closed steps' measured marks, oldest first (bit `m`: metric `m` measured).
    pub fn measured_marks(&self) -> Vec<MetricMask> {
        self.slots_oldest_first()
            .map(|slot| self.measured[slot])
            .collect()
    }

    /// Closed steps held that were gaps (no sample at all in the step).
    pub fn gap_steps(&self) -> usize {
        self.slots_oldest_first()
            .filter(|&slot| self.measured[slot] == 0)
            .count()
    }

    /// Bytes this window occupies, heap included (its size never changes after creation).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of_val(&*self.values)
            + std::mem::size_of_val(&*self.measured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{ALL_METRICS, WindowShape};

    const SHAPE: WindowShape = WindowShape {
        context_steps: 4,
        step_seconds: 300,
    };

    fn all(value: f64) -> [f64; METRIC_COUNT] {
        [value; METRIC_COUNT]
    }

    fn window() -> ServerWindow {
        ServerWindow::new(Profile::Generic, SHAPE.context_steps)
    }

    fn values(window: &ServerWindow) -> Vec<f32> {
        let mut out = Vec::new();
        window.values_into(&mut out);
        out
    }

    /// Steps fill the window up to exactly its context and no further; the oldest step falls out.
    #[test]
    fn fills_to_exactly_the_context() {
        let mut window = window();
        for step in 0..10 {
            window.add(step, &all(step as f64), ALL_METRICS).unwrap();
            assert_eq!(window.filled(), (step as usize).min(4));
        }
        assert!(window.is_ready(4));
        assert_eq!(window.observed(Metric::CpuUserPct), 4);
        let values = values(&window);
        assert_eq!(values.len(), 4 * METRIC_COUNT);
        // Steps 5..=8 are closed (9 is open), oldest first.
        assert_eq!(values[0], 5.0);
        assert_eq!(values[3 * METRIC_COUNT], 8.0);
        assert_eq!(window.newest_closed_step(), Some(8));
    }

    /// A closed step holds the mean of its samples per metric.
    #[test]
    fn step_is_the_mean_of_its_samples() {
        let mut window = window();
        window.add(0, &all(10.0), ALL_METRICS).unwrap();
        window.add(0, &all(20.0), ALL_METRICS).unwrap();
        window.add(0, &all(60.0), 1).unwrap();
        window.add(1, &all(0.0), ALL_METRICS).unwrap();
        let values = values(&window);
        assert_eq!(values[0], 30.0);
        assert_eq!(values[1], 15.0);
        assert_eq!(window.measured_marks(), vec![ALL_METRICS]);
    }

    /// Empty steps are NaN and counted as gaps; a metric missing in a step is NaN alone;
    /// nothing is carried forward.
    #[test]
    fn gaps_are_not_observed() {
        let mut window = window();
        window.add(0, &all(7.0), ALL_METRICS).unwrap();
        let mut partial = all(9.0);
        partial[0] = f64::NAN;
        window.add(1, &partial, ALL_METRICS & !1).unwrap();
        let added = window.add(4, &all(1.0), ALL_METRICS).unwrap();
        assert_eq!(
            added,
            Added {
                closed_step: true,
                gap_steps: 2
            }
        );
        let values = values(&window);
        assert_eq!(values[0], 7.0);
        assert!(
            values[METRIC_COUNT].is_nan(),
            "metric 0 not measured in step 1"
        );
        assert_eq!(values[METRIC_COUNT + 1], 9.0);
        assert!(values[2 * METRIC_COUNT + 1].is_nan(), "gap step");
        assert_eq!(
            window.measured_marks(),
            vec![ALL_METRICS, ALL_METRICS & !1, 0, 0]
        );
        assert_eq!(window.gap_steps(), 2);
        assert_eq!(window.observed(Metric::CpuUserPct), 1);
        assert_eq!(window.observed(Metric::CpuSysPct), 2);
    }

    /// A gap longer than the window overwrites it once, leaving nothing observed.
    #[test]
    fn long_gap_fills_the_window_once() {
        let mut window = window();
        window.add(0, &all(3.0), ALL_METRICS).unwrap();
        let added = window.add(1000, &all(4.0), ALL_METRICS).unwrap();
        assert_eq!(added.gap_steps, 999);
        assert_eq!(window.filled(), 4);
        assert_eq!(window.gap_steps(), 4);
        assert!(values(&window).iter().all(|value| value.is_nan()));
        assert_eq!(window.observed_most(), 0);
        assert!(!window.is_ready(1));
        assert_eq!(window.newest_closed_step(), Some(999));
    }

    /// Only the metrics a server reports become forecastable, once they have enough history;
    /// counts follow steps leaving the ring.
    #[test]
    fn forecastable_follows_observed_history() {
        let mut window = window();
        let cpu_and_memory = (1 << Metric::CpuUserPct.index()) | (1 << Metric::MemUsedPct.index());
        window.add(0, &all(5.0), cpu_and_memory).unwrap();
        window.add(1, &all(5.0), cpu_and_memory).unwrap();
        assert!(!window.is_ready(2), "one closed step");
        window
            .add(2, &all(5.0), 1 << Metric::CpuUserPct.index())
            .unwrap();
        assert_eq!(window.forecastable(2), cpu_and_memory);
        for step in 3..8 {
            window
                .add(step, &all(5.0), 1 << Metric::CpuUserPct.index())
                .unwrap();
        }
        // steps 3..=6 held: memory measured in none of them
        assert_eq!(window.observed(Metric::MemUsedPct), 0);
        assert_eq!(window.forecastable(2), 1 << Metric::CpuUserPct.index());
    }

    /// A metric's series is padded in front with NaN up to the context.
    #[test]
    fn series_is_padded_to_the_context() {
        let mut window = window();
        window.add(0, &all(1.0), ALL_METRICS).unwrap();
        window.add(1, &all(2.0), ALL_METRICS).unwrap();
        window.add(2, &all(3.0), ALL_METRICS).unwrap();
        let mut series = Vec::new();
        window.series_into(Metric::MemUsedPct, &mut series);
        assert_eq!(series.len(), 4);
        assert!(series[0].is_nan() && series[1].is_nan());
        assert_eq!(&series[2..], &[1.0, 2.0]);
    }

    /// A sample older than the open step is refused and changes nothing.
    #[test]
    fn out_of_order_is_refused() {
        let mut window = window();
        window.add(5, &all(1.0), ALL_METRICS).unwrap();
        window.add(6, &all(1.0), ALL_METRICS).unwrap();
        assert_eq!(
            window.add(5, &all(2.0), ALL_METRICS),
            Err(OutOfOrder { open_step: 6 })
        );
        assert_eq!(window.filled(), 1);
        window.add(6, &all(3.0), ALL_METRICS).unwrap();
    }

    /// Memory is allocated once and does not grow with samples; counts stay exact as the
    /// ring turns over.
    #[test]
    fn memory_is_fixed() {
        let mut window = ServerWindow::new(Profile::Generic, 288);
        let before = window.memory_bytes();
        for step in 0..1000 {
            window.add(step, &all(1.0), ALL_METRICS).unwrap();
        }
        assert_eq!(window.memory_bytes(), before);
        assert_eq!(window.observed_most(), 288);
        assert!(before < 20 * 1024, "{before} bytes");
    }

    /// Timestamps map to whole steps, negative ones included.
    #[test]
    fn steps_of_timestamps() {
        assert_eq!(SHAPE.step_of(0), 0);
        assert_eq!(SHAPE.step_of(299_999), 0);
        assert_eq!(SHAPE.step_of(300_000), 1);
        assert_eq!(SHAPE.step_of(-1), -1);
        assert_eq!(SHAPE.step_start_s(2), 600);
    }
}
