//! One server's bounded window: step aggregation, gap carry-forward and warm-up, with no I/O.
//!
//! Samples are bucketed by step (`ts / step_seconds`). The newest bucket is the *open* step:
//! its samples are summed per metric. When a sample for a later step arrives, the open step
//! *closes*: each metric becomes the mean of its samples in that step, or, when it had none,
//! the last known value carried forward (and marked). Steps with no sample at all between the
//! closed step and the new one are *gap steps*: every metric carried forward, every mark set.
//!
//! A metric that has never been measured has no value to carry. Its slots hold the first value
//! later measured (written back over the whole window when that value arrives), stay marked as
//! carried, and the window is not [`ready`](ServerWindow::is_ready) until every metric has been
//! measured at least once. So a ready window never holds a made-up number.
//!
//! Memory is fixed at creation: `context_steps × 14` `f32` values plus one `u16` mark word per
//! step, so a server costs the same whether it has sent one sample or a million.

use crate::catalog::{METRIC_COUNT, Profile};

/// Bit mask with one bit per metric, bit `m` for `Metric::ALL[m]`.
pub type MetricMask = u16;

/// The mask with every metric's bit set.
pub const ALL_METRICS: MetricMask = (1 << METRIC_COUNT) - 1;

/// How a step bucket is sized and how many closed steps a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    /// Closed steps kept (the model's context length), at least 1.
    pub context_steps: usize,
    /// Step length in seconds, at least 1.
    pub step_seconds: i64,
}

impl WindowShape {
    /// The step a timestamp (unix ms) falls in: whole steps since the epoch.
    pub fn step_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.step_seconds * 1000)
    }

    /// Start of a step, unix seconds.
    pub fn step_start_s(&self, step: i64) -> i64 {
        step * self.step_seconds
    }
}

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
    /// Closed steps' values, a ring of `context × 14`; slot `i` holds `values[i*14..][..14]`.
    values: Box<[f32]>,
    /// Per ring slot, bit `m` set when metric `m` was carried forward rather than measured.
    carried: Box<[MetricMask]>,
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
    /// Last measured (step-mean) value per metric: what a gap carries forward.
    last: [f32; METRIC_COUNT],
    /// Metrics measured at least once.
    known: MetricMask,
}

impl ServerWindow {
    /// An empty window; allocates its full capacity now.
    pub fn new(profile: Profile, context_steps: usize) -> Self {
        let context = context_steps.max(1);
        Self {
            profile,
            values: vec![0.0; context * METRIC_COUNT].into_boxed_slice(),
            carried: vec![0; context].into_boxed_slice(),
            filled: 0,
            head: 0,
            open_step: None,
            open_sum: [0.0; METRIC_COUNT],
            open_count: [0; METRIC_COUNT],
            last: [0.0; METRIC_COUNT],
            known: 0,
        }
    }

    /// Closed steps the window holds when full.
    pub fn capacity(&self) -> usize {
        self.carried.len()
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

    /// Metrics measured at least once.
    pub fn known_metrics(&self) -> MetricMask {
        self.known
    }

    /// Full (every slot a closed step) and every metric measured at least once.
    pub fn is_ready(&self) -> bool {
        self.filled == self.capacity() && self.known == ALL_METRICS
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
                    self.push_step(self.last, ALL_METRICS);
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

    /// Closes the open step into the ring: means where measured, carried values elsewhere.
    fn close_open_step(&mut self) {
        let mut step_values = self.last;
        let mut carried = 0;
        for (metric, step_value) in step_values.iter_mut().enumerate() {
            let count = self.open_count[metric];
            if count == 0 {
                carried |= 1 << metric;
                continue;
            }
            let mean = (self.open_sum[metric] / f64::from(count)) as f32;
            *step_value = mean;
            if self.known & (1 << metric) == 0 {
                self.backfill(metric, mean);
                self.known |= 1 << metric;
            }
            self.last[metric] = mean;
        }
        self.open_sum = [0.0; METRIC_COUNT];
        self.open_count = [0; METRIC_COUNT];
        self.push_step(step_values, carried);
    }

    /// Writes a metric's first measured value over every closed step held so far (all of
    /// them carried for that metric, which had no value yet).
    fn backfill(&mut self, metric: usize, value: f32) {
        for slot in 0..self.capacity() {
            self.values[slot * METRIC_COUNT + metric] = value;
        }
    }

    fn push_step(&mut self, step_values: [f32; METRIC_COUNT], carried: MetricMask) {
        let slot = self.head;
        self.values[slot * METRIC_COUNT..(slot + 1) * METRIC_COUNT].copy_from_slice(&step_values);
        self.carried[slot] = carried;
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
    /// oldest first.
    pub fn values_into(&self, out: &mut Vec<f32>) {
        out.reserve(self.filled * METRIC_COUNT);
        for slot in self.slots_oldest_first() {
            out.extend_from_slice(&self.values[slot * METRIC_COUNT..(slot + 1) * METRIC_COUNT]);
        }
    }

    /// The closed steps' carried-forward marks, oldest first (bit `m`: metric `m` carried).
    pub fn carried_marks(&self) -> Vec<MetricMask> {
        self.slots_oldest_first()
            .map(|slot| self.carried[slot])
            .collect()
    }

    /// Closed steps held that were gaps (no sample at all in the step).
    pub fn gap_steps(&self) -> usize {
        self.slots_oldest_first()
            .filter(|&slot| self.carried[slot] == ALL_METRICS)
            .count()
    }

    /// Bytes this window occupies, heap included (its size never changes after creation).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of_val(&*self.values)
            + std::mem::size_of_val(&*self.carried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(window.is_ready());
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
        assert_eq!(window.carried_marks(), vec![0]);
    }

    /// Empty steps carry the last values forward and are marked; a metric missing in a step is
    /// carried and marked alone.
    #[test]
    fn gaps_carry_forward_and_are_marked() {
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
        assert_eq!(values[METRIC_COUNT], 7.0, "metric 0 carried into step 1");
        assert_eq!(values[METRIC_COUNT + 1], 9.0);
        assert_eq!(values[2 * METRIC_COUNT + 1], 9.0, "gap carries step 1");
        assert_eq!(window.carried_marks(), vec![0, 1, ALL_METRICS, ALL_METRICS]);
        assert_eq!(window.gap_steps(), 2);
    }

    /// A gap longer than the window overwrites it once, and the step count stays right.
    #[test]
    fn long_gap_fills_the_window_once() {
        let mut window = window();
        window.add(0, &all(3.0), ALL_METRICS).unwrap();
        let added = window.add(1000, &all(4.0), ALL_METRICS).unwrap();
        assert_eq!(added.gap_steps, 999);
        assert_eq!(window.filled(), 4);
        assert_eq!(window.gap_steps(), 4);
        assert!(values(&window).iter().all(|&value| value == 3.0));
        assert_eq!(window.newest_closed_step(), Some(999));
    }

    /// A metric first seen late is back-filled with its first value and the window is not ready
    /// until every metric was seen.
    #[test]
    fn unknown_metrics_block_readiness_and_backfill() {
        let mut window = window();
        for step in 0..6 {
            window.add(step, &all(5.0), 0b10).unwrap();
        }
        assert_eq!(window.filled(), 4);
        assert!(!window.is_ready());
        window.add(6, &all(8.0), ALL_METRICS).unwrap();
        window.add(7, &all(8.0), ALL_METRICS).unwrap();
        assert!(window.is_ready());
        let values = values(&window);
        assert_eq!(values[0], 8.0, "metric 0 back-filled with its first value");
        assert_eq!(values[1], 5.0);
        assert_eq!(window.carried_marks()[0], ALL_METRICS & !0b10);
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

    /// Memory is allocated once and does not grow with samples.
    #[test]
    fn memory_is_fixed() {
        let mut window = ServerWindow::new(Profile::Generic, 288);
        let before = window.memory_bytes();
        for step in 0..1000 {
            window.add(step, &all(1.0), ALL_METRICS).unwrap();
        }
        assert_eq!(window.memory_bytes(), before);
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
