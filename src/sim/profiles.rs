//! The numbers of the synthetic fleet: per-profile baselines, Markov states and their
//! multipliers, the diurnal curve, the dependency graph's impact effects and the incident
//! targets. All from the original generator (catalog §2–3); where the catalog gives only a
//! range ("about 1.2–1.5") the value chosen here is written next to it.
//!
//! Percent metrics are fractions (0–1) inside the simulation and become percent on output.

use crate::catalog::{Baseline, METRIC_COUNT, Metric, Profile};

/// Index of each metric in a value array (model order, [`Metric::ALL`]).
pub(crate) const USER: usize = Metric::CpuUserPct as usize;
pub(crate) const SYS: usize = Metric::CpuSysPct as usize;
pub(crate) const IOWAIT: usize = Metric::CpuIowaitPct as usize;
pub(crate) const IDLE: usize = Metric::CpuIdlePct as usize;
pub(crate) const JAVA: usize = Metric::JavaCpuPct as usize;
pub(crate) const MEM: usize = Metric::MemUsedPct as usize;
pub(crate) const NET_IN: usize = Metric::NetInMbS as usize;
pub(crate) const NET_OUT: usize = Metric::NetOutMbS as usize;
pub(crate) const BACK_CW: usize = Metric::BackCloseWait as usize;
pub(crate) const FRONT_CW: usize = Metric::FrontCloseWait as usize;
pub(crate) const LOAD: usize = Metric::LoadAverage as usize;
pub(crate) const UPTIME: usize = Metric::UptimeDays as usize;

/// Per-profile baselines (catalog §2), kept in [`crate::catalog`] because the risk scorer and
/// the alert router read what is normal for a profile too.
pub(crate) fn baseline(profile: Profile) -> &'static Baseline {
    profile.baseline()
}

/// Number of Markov states.
pub const STATE_COUNT: usize = 8;

/// A server's Markov state (catalog §1 status enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Normal operation.
    Healthy,
    /// Start-of-day surge.
    MorningSpike,
    /// Sustained high load.
    HeavyLoad,
    /// Something is badly wrong.
    CriticalIssue,
    /// Little work.
    Idle,
    /// Planned work; low load.
    Maintenance,
    /// Coming back after trouble.
    Recovery,
    /// Down: every metric reads zero.
    Offline,
}

impl State {
    /// Every state, in index order.
    pub const ALL: [State; STATE_COUNT] = [
        State::Healthy,
        State::MorningSpike,
        State::HeavyLoad,
        State::CriticalIssue,
        State::Idle,
        State::Maintenance,
        State::Recovery,
        State::Offline,
    ];

    /// The lowercase name used in exported data, e.g. `critical_issue`.
    pub fn name(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::MorningSpike => "morning_spike",
            State::HeavyLoad => "heavy_load",
            State::CriticalIssue => "critical_issue",
            State::Idle => "idle",
            State::Maintenance => "maintenance",
            State::Recovery => "recovery",
            State::Offline => "offline",
        }
    }

    /// Multiplier of each metric's draw in this state. cpu_idle's entry is unused: idle is
    /// derived from user + sys + iowait. Disk and uptime always stay at 1.
    pub(crate) fn multipliers(self) -> &'static [f64; METRIC_COUNT] {
        // user, sys, iowait, idle, java, mem, swap, disk, net_in, net_out, back_cw, front_cw,
        // load, uptime
        const HEALTHY: [f64; METRIC_COUNT] = [1.0; METRIC_COUNT];
        // catalog: "about 1.2-1.5"
        const MORNING_SPIKE: [f64; METRIC_COUNT] = [
            1.4, 1.3, 1.2, 1.0, 1.4, 1.1, 1.2, 1.0, 1.5, 1.5, 1.3, 1.3, 1.5, 1.0,
        ];
        // catalog: "about 1.2-1.5"
        const HEAVY_LOAD: [f64; METRIC_COUNT] = [
            1.5, 1.4, 1.5, 1.0, 1.5, 1.2, 1.5, 1.0, 1.3, 1.3, 1.5, 1.5, 1.5, 1.0,
        ];
        // catalog, exact
        const CRITICAL: [f64; METRIC_COUNT] = [
            2.5, 2.0, 3.5, 0.3, 2.8, 1.4, 3.0, 1.0, 0.4, 0.3, 2.5, 2.5, 2.5, 1.0,
        ];
        // catalog: "about 0.2-0.5 (idle 1.5)"
        const IDLE_STATE: [f64; METRIC_COUNT] = [
            0.3, 0.5, 0.3, 1.5, 0.2, 0.7, 0.5, 1.0, 0.2, 0.2, 0.3, 0.3, 0.2, 1.0,
        ];
        // catalog: "low"
        const MAINTENANCE: [f64; METRIC_COUNT] = [
            0.2, 0.3, 0.3, 1.5, 0.1, 0.5, 0.5, 1.0, 0.1, 0.1, 0.2, 0.2, 0.3, 1.0,
        ];
        // catalog: "about 0.7-1.2"
        const RECOVERY: [f64; METRIC_COUNT] = [
            0.8, 1.1, 1.2, 1.0, 0.7, 0.9, 1.2, 1.0, 0.8, 0.8, 1.0, 1.0, 0.9, 1.0,
        ];
        const OFFLINE: [f64; METRIC_COUNT] = [0.0; METRIC_COUNT];
        match self {
            State::Healthy => &HEALTHY,
            State::MorningSpike => &MORNING_SPIKE,
            State::HeavyLoad => &HEAVY_LOAD,
            State::CriticalIssue => &CRITICAL,
            State::Idle => &IDLE_STATE,
            State::Maintenance => &MAINTENANCE,
            State::Recovery => &RECOVERY,
            State::Offline => &OFFLINE,
        }
    }

    /// The next state, given a uniform draw `u` in [0, 1), the UTC hour and whether the
    /// server is a problem child (catalog §3 matrix; problem children ×2 CRITICAL and ×1.5
    /// OFFLINE, then the row is renormalised, as is the HEALTHY row whose hour-dependent
    /// entries do not sum to 1).
    pub(crate) fn next(self, hour: u32, problem_child: bool, u: f64) -> State {
        let mut row = [0.0_f64; STATE_COUNT];
        let mut set = |state: State, p: f64| row[state as usize] = p;
        match self {
            State::Healthy => {
                set(State::Healthy, 0.85);
                set(
                    State::MorningSpike,
                    if (7..=9).contains(&hour) { 0.08 } else { 0.02 },
                );
                set(
                    State::HeavyLoad,
                    if (10..=17).contains(&hour) {
                        0.06
                    } else {
                        0.02
                    },
                );
                set(State::CriticalIssue, 0.02);
                set(
                    State::Idle,
                    if !(6..=22).contains(&hour) {
                        0.03
                    } else {
                        0.01
                    },
                );
            }
            State::Idle => {
                set(State::Idle, 0.7);
                set(State::Healthy, 0.25);
                set(State::Maintenance, 0.05);
            }
            State::MorningSpike => {
                set(State::MorningSpike, 0.6);
                set(State::Healthy, 0.25);
                set(State::HeavyLoad, 0.1);
                set(State::CriticalIssue, 0.05);
            }
            State::HeavyLoad => {
                set(State::HeavyLoad, 0.7);
                set(State::Healthy, 0.2);
                set(State::CriticalIssue, 0.08);
                set(State::Idle, 0.02);
            }
            State::CriticalIssue => {
                set(State::CriticalIssue, 0.3);
                set(State::Offline, 0.4);
                set(State::Recovery, 0.3);
            }
            State::Maintenance => {
                set(State::Maintenance, 0.8);
                set(State::Offline, 0.1);
                set(State::Healthy, 0.1);
            }
            State::Recovery => {
                set(State::Recovery, 0.6);
                set(State::Healthy, 0.35);
                set(State::Idle, 0.05);
            }
            State::Offline => {
                set(State::Offline, 0.7);
                set(State::Recovery, 0.3);
            }
        }
        if problem_child {
            row[State::CriticalIssue as usize] *= 2.0;
            row[State::Offline as usize] *= 1.5;
        }
        let total: f64 = row.iter().sum();
        let mut threshold = u * total;
        for state in State::ALL {
            let p = row[state as usize];
            if threshold < p {
                return state;
            }
            threshold -= p;
        }
        // Only reachable through rounding at u ≈ 1: stay.
        self
    }
}

/// The diurnal factor of the metric at index `metric` given the load factor `diurnal`
/// ([`Metric::diurnal_factor`]).
pub(crate) fn diurnal_of(metric: usize, diurnal: f64) -> f64 {
    Metric::ALL[metric].diurnal_factor(diurnal)
}

/// How an upstream failure hurts a dependent (catalog §3 cascades).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impact {
    ConnectionFailures,
    RequestQueuing,
    IdleResources,
    DataStarvation,
}

impl Impact {
    /// (metric, multiplier, added value): each applies as `v·(1 + (m−1)·i·s) + add·i·s`.
    pub(crate) fn effects(self) -> &'static [(usize, f64, f64)] {
        match self {
            Impact::ConnectionFailures => &[
                (BACK_CW, 3.0, 15.0),
                (FRONT_CW, 2.5, 10.0),
                (LOAD, 1.3, 0.0),
                (SYS, 1.4, 0.0),
            ],
            Impact::RequestQueuing => &[
                (LOAD, 2.0, 0.0),
                (MEM, 1.15, 0.0),
                (BACK_CW, 1.5, 5.0),
                (JAVA, 1.2, 0.0),
            ],
            Impact::IdleResources => &[
                (USER, 0.3, 0.0),
                (JAVA, 0.2, 0.0),
                (NET_IN, 0.1, 0.0),
                (NET_OUT, 0.1, 0.0),
                (LOAD, 0.4, 0.0),
            ],
            Impact::DataStarvation => &[
                (USER, 0.4, 0.0),
                (JAVA, 0.3, 0.0),
                (NET_IN, 0.15, 0.0),
                (MEM, 0.9, 0.0),
                (LOAD, 0.5, 0.0),
            ],
        }
    }
}

/// One edge of the dependency graph: `downstream` depends on `upstream`, suffering these
/// impacts with these strengths.
pub(crate) struct Edge {
    pub downstream: Profile,
    pub upstream: Profile,
    pub impacts: &'static [(Impact, f64)],
}

/// The dependency edges (catalog §3).
pub(crate) const EDGES: &[Edge] = &[
    Edge {
        downstream: Profile::WebApi,
        upstream: Profile::Database,
        impacts: &[
            (Impact::ConnectionFailures, 0.85),
            (Impact::RequestQueuing, 0.70),
        ],
    },
    Edge {
        downstream: Profile::DataIngest,
        upstream: Profile::Database,
        impacts: &[
            (Impact::ConnectionFailures, 0.75),
            (Impact::RequestQueuing, 0.60),
        ],
    },
    Edge {
        downstream: Profile::RiskAnalytics,
        upstream: Profile::Database,
        impacts: &[
            (Impact::DataStarvation, 0.80),
            (Impact::IdleResources, 0.50),
        ],
    },
    Edge {
        downstream: Profile::MlCompute,
        upstream: Profile::ConductorMgmt,
        impacts: &[(Impact::IdleResources, 0.90)],
    },
    Edge {
        downstream: Profile::MlCompute,
        upstream: Profile::DataIngest,
        impacts: &[(Impact::DataStarvation, 0.60)],
    },
    Edge {
        downstream: Profile::ConductorMgmt,
        upstream: Profile::Database,
        impacts: &[(Impact::ConnectionFailures, 0.70)],
    },
];

/// Whether servers of `profile` start cascades (they are some edge's upstream).
pub(crate) fn is_upstream(profile: Profile) -> bool {
    EDGES.iter().any(|edge| edge.upstream == profile)
}

/// Levels an incident drives cpu_user, mem_used and (databases only, as the original's
/// scenarios) cpu_iowait towards, as fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Targets {
    pub user: f64,
    pub mem: f64,
    pub iowait: f64,
}

/// The metrics an incident drives, with the matching field of [`Targets`].
pub(crate) const FORCED: [usize; 3] = [USER, MEM, IOWAIT];

impl Targets {
    pub(crate) const fn get(&self, slot: usize) -> f64 {
        match slot {
            0 => self.user,
            1 => self.mem,
            _ => self.iowait,
        }
    }

    pub(crate) fn lerp(&self, other: &Targets, p: f64) -> Targets {
        Targets {
            user: self.user + (other.user - self.user) * p,
            mem: self.mem + (other.mem - self.mem) * p,
            iowait: self.iowait + (other.iowait - self.iowait) * p,
        }
    }
}

/// Degrading incidents and the `degrading` scenario: cpu 75 %, mem 80 %, iowait 18 %.
pub(crate) const DEGRADING: Targets = Targets {
    user: 0.75,
    mem: 0.80,
    iowait: 0.18,
};
/// Critical incidents and `critical` after `degrading`: cpu 92 %, mem 95 %, iowait 40 %.
pub(crate) const CRITICAL: Targets = Targets {
    user: 0.92,
    mem: 0.95,
    iowait: 0.40,
};
/// `critical` from any other scenario: cpu 90 %, mem 93 %, iowait 35 %.
pub(crate) const CRITICAL_FRESH: Targets = Targets {
    user: 0.90,
    mem: 0.93,
    iowait: 0.35,
};
/// The failing databases of the `cascade` scenario: cpu 95 %, mem 92 %, iowait 45 %.
pub(crate) const CASCADE_SOURCE: Targets = Targets {
    user: 0.95,
    mem: 0.92,
    iowait: 0.45,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The baselines' cpu components already sum to ~100 %, so deriving idle keeps its mean.
    #[test]
    fn idle_baseline_is_the_rest_of_the_cpu() {
        for profile in Profile::ALL {
            let mean = &baseline(profile).mean;
            let rest = 1.0 - mean[USER] - mean[SYS] - mean[IOWAIT];
            assert!((rest - mean[IDLE]).abs() < 0.011, "{profile}: {rest}");
        }
    }

    /// Every Markov row is a distribution: all states reachable only as the catalog says.
    #[test]
    fn markov_rows_follow_the_catalog() {
        // A draw just below 0.85/1.0 stays healthy at noon; offline never goes straight to
        // healthy.
        assert_eq!(State::Healthy.next(12, false, 0.0), State::Healthy);
        for i in 0..1000 {
            let u = f64::from(i) / 1000.0;
            assert_ne!(State::Offline.next(3, true, u), State::Healthy);
            assert_ne!(State::Idle.next(3, false, u), State::CriticalIssue);
        }
        assert_eq!(
            State::CriticalIssue.next(0, false, 0.999_999),
            State::Offline
        );
        assert_eq!(
            State::CriticalIssue.next(0, false, 0.0),
            State::CriticalIssue
        );
    }
}
