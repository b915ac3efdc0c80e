//! The one alert scale: four levels and the score thresholds between them.
//!
//! The original had four scales that disagreed (catalog §6, §10.6), so the API's level and the
//! summary counts could contradict each other for the same server. fleetcast has exactly one,
//! set in `[alerts]` (default: the original API's healthy < 20 ≤ watch < 40 ≤ warning < 70 ≤
//! critical), and every consumer (risk scorer, alert router, fleet summary, gateway) reads a
//! level through [`Scale::level_of`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A level on the one alert scale, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below the watch threshold.
    Healthy,
    /// Worth monitoring.
    Watch,
    /// Investigate.
    Warning,
    /// Act now.
    Critical,
}

impl Level {
    /// Every level, best first.
    pub const ALL: [Level; 4] = [
        Level::Healthy,
        Level::Watch,
        Level::Warning,
        Level::Critical,
    ];

    /// The wire name, also the severity token of `alerts.<severity>.<server>`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Watch => "watch",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// Position on the scale: 0 for healthy up to 3 for critical.
    pub fn rank(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|level| level.name() == name)
            .ok_or_else(|| format!("unknown level `{name}`"))
    }
}

/// The score thresholds of the scale: a score at or above `critical` is critical, and so on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Lowest watch score.
    pub watch: f64,
    /// Lowest warning score.
    pub warning: f64,
    /// Lowest critical score.
    pub critical: f64,
}

impl Default for Scale {
    /// The original API's scale (catalog §6, `core/alert_levels.py`): 20 / 40 / 70.
    fn default() -> Self {
        Scale {
            watch: 20.0,
            warning: 40.0,
            critical: 70.0,
        }
    }
}

impl Scale {
    /// The level of `score`.
    pub fn level_of(&self, score: f64) -> Level {
        if score >= self.critical {
            Level::Critical
        } else if score >= self.warning {
            Level::Warning
        } else if score >= self.watch {
            Level::Watch
        } else {
            Level::Healthy
        }
    }

    /// The lowest score of `level` (0 for healthy).
    pub fn threshold(&self, level: Level) -> f64 {
        match level {
            Level::Healthy => 0.0,
            Level::Watch => self.watch,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores map to levels with the threshold itself belonging to the higher level.
    #[test]
    fn thresholds_belong_to_the_higher_level() {
        let scale = Scale::default();
        assert_eq!(scale.level_of(0.0), Level::Healthy);
        assert_eq!(scale.level_of(19.99), Level::Healthy);
        assert_eq!(scale.level_of(20.0), Level::Watch);
        assert_eq!(scale.level_of(40.0), Level::Warning);
        assert_eq!(scale.level_of(69.9), Level::Warning);
        assert_eq!(scale.level_of(70.0), Level::Critical);
        assert_eq!(scale.level_of(100.0), Level::Critical);
    }

    /// Level names round-trip and order from best to worst.
    #[test]
    fn names_round_trip_and_order() {
        for level in Level::ALL {
            assert_eq!(level.name().parse::<Level>().unwrap(), level);
        }
        assert!(Level::Critical > Level::Warning && Level::Watch > Level::Healthy);
        assert!("severe".parse::<Level>().is_err());
    }
}
