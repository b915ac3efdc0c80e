//! `[partitions]`: scale-out of the risk scorer and the alert router by a stable partition
//! of the server name (issue 12, item 2; see `actors::stage::partition`).

use super::Problems;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[partitions]`: how many partitions the risk scorer's and the alert router's input is
/// split into, and how long an instance's claim on one lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartitionSettings {
    /// Partitions of each stage's input. 1 (the default): one instance reads everything
    /// through the stage's own consumers, no extra streams; more: every instance of the stage
    /// claims its share of the partitions, each owned by exactly one instance at a time.
    pub count: u32,
    /// How long a partition's lease lasts without renewal, ms; 0 = one generator step
    /// (`generator.step_interval_ms`). A dead instance's partitions are taken over about
    /// one lease after its last renewal.
    pub lease_ms: u64,
    /// Inputs per server and stream the partitioned input streams keep, from which a new
    /// owner rebuilds a partition's state.
    pub history: i64,
}

impl Default for PartitionSettings {
    fn default() -> Self {
        Self {
            count: 1,
            lease_ms: 0,
            history: 256,
        }
    }
}

impl PartitionSettings {
    /// Whether the stages run partitioned (`count` above 1).
    pub fn enabled(&self) -> bool {
        self.count > 1
    }

    /// The lease's time-to-live: `lease_ms`, or one step of `step_interval_ms` when 0.
    pub fn lease(&self, step_interval_ms: u64) -> Duration {
        let ms = if self.lease_ms == 0 {
            step_interval_ms
        } else {
            self.lease_ms
        };
        Duration::from_millis(ms.max(MIN_LEASE_MS))
    }

    pub(super) fn check(&self, problems: &mut Problems) {
        problems.check((1..=1024).contains(&self.count), "partitions.count", || {
            format!("{} is outside 1–1024", self.count)
        });
        problems.check(
            self.lease_ms == 0 || (MIN_LEASE_MS..=3_600_000).contains(&self.lease_ms),
            "partitions.lease_ms",
            || {
                format!(
                    "{} is neither 0 nor within {MIN_LEASE_MS}–3600000",
                    self.lease_ms
                )
            },
        );
        problems.check(
            (1..=1_000_000).contains(&self.history),
            "partitions.history",
            || format!("{} is outside 1–1000000", self.history),
        );
    }
}

/// The shortest lease: renewals go out four times a lease.
pub const MIN_LEASE_MS: u64 = 400;

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease of 0 follows the step; a step shorter than the floor gets the floor.
    #[test]
    fn lease_follows_the_step() {
        let mut settings = PartitionSettings::default();
        assert!(!settings.enabled());
        assert_eq!(settings.lease(5_000), Duration::from_secs(5));
        assert_eq!(settings.lease(100), Duration::from_millis(MIN_LEASE_MS));
        settings.lease_ms = 1_500;
        assert_eq!(settings.lease(5_000), Duration::from_millis(1_500));
        let mut problems = Problems::default();
        PartitionSettings {
            count: 0,
            lease_ms: 10,
            history: 0,
        }
        .check(&mut problems);
        assert_eq!(problems.0.len(), 3);
    }
}
