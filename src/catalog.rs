//! The fixed vocabulary of fleetcast: the 14 metrics (names, units, valid ranges) and the
//! 7 server profiles, with the one rule that infers a profile from a server name.
//!
//! Numbers come from the original system's catalog (§1 metrics, §2 profiles). The original
//! inferred profiles in six inconsistent places; here there is exactly one function,
//! [`Profile::infer`], and everything (generator, window keeper, risk scorer) calls it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Number of metrics the model forecasts.
pub const METRIC_COUNT: usize = 14;

/// One of the 14 metrics, in model order (the order of [`Metric::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    CpuUserPct,
    CpuSysPct,
    CpuIowaitPct,
    CpuIdlePct,
    JavaCpuPct,
    MemUsedPct,
    SwapUsedPct,
    DiskUsagePct,
    NetInMbS,
    NetOutMbS,
    BackCloseWait,
    FrontCloseWait,
    LoadAverage,
    UptimeDays,
}

/// What a metric measures, which decides its valid range and how values are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A percentage, 0–100.
    Percent,
    /// A rate in MB/s, ≥ 0.
    Rate,
    /// An integer count (CLOSE_WAIT sockets), ≥ 0.
    Count,
    /// Load average, ≥ 0.
    Load,
    /// Whole days of uptime, 0–365.
    Days,
}

impl Metric {
    /// Every metric in model order.
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::CpuUserPct,
        Metric::CpuSysPct,
        Metric::CpuIowaitPct,
        Metric::CpuIdlePct,
        Metric::JavaCpuPct,
        Metric::MemUsedPct,
        Metric::SwapUsedPct,
        Metric::DiskUsagePct,
        Metric::NetInMbS,
        Metric::NetOutMbS,
        Metric::BackCloseWait,
        Metric::FrontCloseWait,
        Metric::LoadAverage,
        Metric::UptimeDays,
    ];

    /// Position in model order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire and column name, e.g. `mem_used_pct`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::CpuUserPct => "cpu_user_pct",
            Metric::CpuSysPct => "cpu_sys_pct",
            Metric::CpuIowaitPct => "cpu_iowait_pct",
            Metric::CpuIdlePct => "cpu_idle_pct",
            Metric::JavaCpuPct => "java_cpu_pct",
            Metric::MemUsedPct => "mem_used_pct",
            Metric::SwapUsedPct => "swap_used_pct",
            Metric::DiskUsagePct => "disk_usage_pct",
            Metric::NetInMbS => "net_in_mb_s",
            Metric::NetOutMbS => "net_out_mb_s",
            Metric::BackCloseWait => "back_close_wait",
            Metric::FrontCloseWait => "front_close_wait",
            Metric::LoadAverage => "load_average",
            Metric::UptimeDays => "uptime_days",
        }
    }

    /// What kind of quantity this is.
    pub fn kind(self) -> MetricKind {
        match self {
            Metric::CpuUserPct
            | Metric::CpuSysPct
            | Metric::CpuIowaitPct
            | Metric::CpuIdlePct
            | Metric::JavaCpuPct
            | Metric::MemUsedPct
            | Metric::SwapUsedPct
            | Metric::DiskUsagePct => MetricKind::Percent,
            Metric::NetInMbS | Metric::NetOutMbS => MetricKind::Rate,
            Metric::BackCloseWait | Metric::FrontCloseWait => MetricKind::Count,
            Metric::LoadAverage => MetricKind::Load,
            Metric::UptimeDays => MetricKind::Days,
        }
    }

    /// The share of the diurnal swing ([`Profile::diurnal`]) the metric follows: activity
    /// (cpu, java, network, sockets, load) fully; memory and swap in use a quarter (they do
    /// not scale with request load, and the original's full factor, up to 1.5, drove
    /// risk_analytics and ml_compute servers to 100 % memory every afternoon in a fleet
    /// held healthy); disk and uptime not at all (catalog §3).
    pub fn diurnal_share(self) -> f64 {
        match self {
            Metric::DiskUsagePct | Metric::UptimeDays => 0.0,
            Metric::MemUsedPct | Metric::SwapUsedPct => 0.25,
            _ => 1.0,
        }
    }

    /// The factor this metric scales by when a profile's load factor is `diurnal`
    /// ([`Profile::diurnal`]): `1 + share · (diurnal − 1)`.
    pub fn diurnal_factor(self, diurnal: f64) -> f64 {
        1.0 + self.diurnal_share() * (diurnal - 1.0)
    }

    /// Unit for humans and `SUBJECTS.md`.
    pub fn unit(self) -> &'static str {
        match self.kind() {
            MetricKind::Percent => "%",
            MetricKind::Rate => "MB/s",
            MetricKind::Count => "count",
            MetricKind::Load => "load",
            MetricKind::Days => "days",
        }
    }

    /// Inclusive valid range of an ingested value (catalog §1; uptime as the validator's 0–365).
    pub fn range(self) -> (f64, f64) {
        match self.kind() {
            MetricKind::Percent => (0.0, 100.0),
            MetricKind::Days => (0.0, 365.0),
            MetricKind::Rate | MetricKind::Count | MetricKind::Load => (0.0, f64::MAX),
        }
    }

    /// Looks a metric up by its wire name.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of server profiles.
pub const PROFILE_COUNT: usize = 7;

/// A server's role, the model's one static covariate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    MlCompute,
    Database,
    WebApi,
    ConductorMgmt,
    DataIngest,
    RiskAnalytics,
    Generic,
}

/// Name fragments that identify a profile (catalog §2, the 27 patterns of
/// `server_profiles.py`), matched on the lower-cased name in this order; first match wins.
const PROFILE_PATTERNS: &[(&str, Profile)] = &[
    ("ppml", Profile::MlCompute),
    ("ppgpu", Profile::MlCompute),
    ("cptrain", Profile::MlCompute),
    ("ml-node-", Profile::MlCompute),
    ("ppdb", Profile::Database),
    ("psdb", Profile::Database),
    ("oracle", Profile::Database),
    ("mongo", Profile::Database),
    ("postgres", Profile::Database),
    ("mysql", Profile::Database),
    ("ppweb", Profile::WebApi),
    ("ppapi", Profile::WebApi),
    ("nginx", Profile::WebApi),
    ("tomcat", Profile::WebApi),
    ("api-server-", Profile::WebApi),
    ("ppcon", Profile::ConductorMgmt),
    ("conductor", Profile::ConductorMgmt),
    ("egomgmt", Profile::ConductorMgmt),
    ("maestro", Profile::ConductorMgmt),
    ("ppetl", Profile::DataIngest),
    ("ppkafka", Profile::DataIngest),
    ("stream", Profile::DataIngest),
    ("spark", Profile::DataIngest),
    ("flink", Profile::DataIngest),
    ("pprisk", Profile::RiskAnalytics),
    ("varrisk", Profile::RiskAnalytics),
    ("credit", Profile::RiskAnalytics),
    ("quant", Profile::RiskAnalytics),
];

impl Profile {
    /// Every profile in model vocabulary order.
    pub const ALL: [Profile; PROFILE_COUNT] = [
        Profile::MlCompute,
        Profile::Database,
        Profile::WebApi,
        Profile::ConductorMgmt,
        Profile::DataIngest,
        Profile::RiskAnalytics,
        Profile::Generic,
    ];

    /// Position in the model's profile vocabulary.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name, e.g. `web_api`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::MlCompute => "ml_compute",
            Profile::Database => "database",
            Profile::WebApi => "web_api",
            Profile::ConductorMgmt => "conductor_mgmt",
            Profile::DataIngest => "data_ingest",
            Profile::RiskAnalytics => "risk_analytics",
            Profile::Generic => "generic",
        }
    }

    /// The one profile-inference rule: the first pattern contained in the lower-cased name
    /// wins (so `ppweb001` and `ppapi001` are both `web_api`), otherwise `generic`.
    pub fn infer(server: &str) -> Profile {
        let lower = server.to_ascii_lowercase();
        PROFILE_PATTERNS
            .iter()
            .find(|(pattern, _)| lower.contains(pattern))
            .map_or(Profile::Generic, |&(_, profile)| profile)
    }

    /// This profile's baseline mean and standard deviation of every metric (catalog §2).
    pub fn baseline(self) -> &'static Baseline {
        baseline_of(self)
    }

    /// The top of what is normal for this profile: the baseline mean plus `sigmas` standard
    /// deviations of `metric`, in the metric's own unit (percent for percentages).
    pub fn normal_top(self, metric: Metric, sigmas: f64) -> f64 {
        let baseline = self.baseline();
        let index = metric.index();
        let top = baseline.mean[index] + sigmas * baseline.std[index];
        match metric.kind() {
            MetricKind::Percent => 100.0 * top,
            _ => top,
        }
    }

    /// The top of this profile's normal CPU busy percent (`100 − cpu_idle_pct`): idle's mean
    /// minus `sigmas` of its standard deviations, turned into busy.
    pub fn normal_busy_top(self, sigmas: f64) -> f64 {
        let baseline = self.baseline();
        let idle = Metric::CpuIdlePct.index();
        100.0 * (1.0 - baseline.mean[idle] + sigmas * baseline.std[idle])
    }

    /// A memory threshold written for the generic profile (limit 90 %, the original's
    /// tables) moved to this profile's limit: it keeps its share of the headroom above the
    /// limit, `100 − (100 − t) · max(100 − limit, 1) / 10`, rounded to 0.01. The floor of one
    /// point keeps a database's (limit 100) thresholds distinct and reachable.
    pub fn memory_threshold(self, generic: f64) -> f64 {
        let headroom = (100.0 - self.memory_limit_pct()).max(1.0);
        let moved = 100.0 - (100.0 - generic) * headroom / (100.0 - GENERIC_MEMORY_LIMIT);
        (moved * 100.0).round() / 100.0
    }

    /// The diurnal load factor of this profile at UTC `hour` (catalog §3): a base curve
    /// (0.8 at night, 1.0 mornings and evenings, 1.1 in business hours, 1.2 at 16–19 h) with
    /// per-profile adjustments, clipped to 0.5–1.5. Activity metrics scale by it.
    pub fn diurnal(self, hour: u32) -> f64 {
        let base: f64 = match hour {
            0..7 => 0.8,
            7..9 => 1.0,
            9..16 => 1.1,
            16..19 => 1.2,
            _ => 1.0,
        };
        let business = (9..16).contains(&hour);
        let evening = (16..19).contains(&hour);
        let adjust = match self {
            Profile::MlCompute if !(7..19).contains(&hour) => 1.15,
            Profile::Database if business => 1.1,
            Profile::Database if evening => 1.2,
            Profile::WebApi if business => 1.15,
            Profile::WebApi if !(7..=20).contains(&hour) => 0.6,
            Profile::RiskAnalytics if evening => 1.3,
            Profile::DataIngest if business => 1.2,
            _ => 1.0,
        };
        (base * adjust).clamp(0.5, 1.5)
    }

    /// [`Self::normal_top`] at UTC `hour`: scaled by the hour's diurnal factor as far as
    /// the metric follows it ([`Metric::diurnal_share`]).
    pub fn normal_top_at(self, metric: Metric, sigmas: f64, hour: u32) -> f64 {
        self.normal_top(metric, sigmas) * metric.diurnal_factor(self.diurnal(hour))
    }

    /// The top of this profile's normal CPU busy percent at UTC `hour`: its
    /// [`Self::normal_busy_top`] scaled by the hour's [`Self::diurnal`] factor, as the
    /// profile's activity is. A risk_analytics server's evening peak is normal for it.
    pub fn normal_busy_top_at(self, sigmas: f64, hour: u32) -> f64 {
        self.normal_busy_top(sigmas) * self.diurnal(hour)
    }

    /// Memory-used limit (percent) above which this profile is in trouble: the per-profile
    /// limits the original documented but never implemented (catalog §2).
    pub fn memory_limit_pct(self) -> f64 {
        match self {
            Profile::MlCompute => 98.0,
            Profile::Database => 100.0,
            Profile::WebApi => 85.0,
            Profile::ConductorMgmt => 90.0,
            Profile::DataIngest => 90.0,
            Profile::RiskAnalytics => 95.0,
            Profile::Generic => 90.0,
        }
    }
}

/// Mean and standard deviation of every metric for one profile.
pub struct Baseline {
    /// Means, percent metrics as fractions (0–1).
    pub mean: [f64; METRIC_COUNT],
    /// Standard deviations, in the same units.
    pub std: [f64; METRIC_COUNT],
}

/// Per-profile baselines, catalog §2 (`metrics_config.py:92-212`), in model order:
/// user, sys, iowait, idle, java, mem, swap, disk, net_in, net_out, back_cw, front_cw, load,
/// uptime.
fn baseline_of(profile: Profile) -> &'static Baseline {
    const ML: Baseline = Baseline {
        mean: [
            0.45, 0.08, 0.02, 0.45, 0.50, 0.72, 0.05, 0.55, 8.5, 5.2, 2.0, 2.0, 6.5, 25.0,
        ],
        std: [
            0.12, 0.03, 0.01, 0.15, 0.15, 0.10, 0.03, 0.08, 3.0, 2.0, 1.0, 1.0, 2.0, 2.0,
        ],
    };
    const DB: Baseline = Baseline {
        mean: [
            0.25, 0.12, 0.15, 0.48, 0.10, 0.68, 0.03, 0.70, 35.0, 28.0, 8.0, 6.0, 4.2, 25.0,
        ],
        std: [
            0.08, 0.04, 0.05, 0.12, 0.05, 0.10, 0.02, 0.10, 12.0, 10.0, 3.0, 2.0, 1.5, 2.0,
        ],
    };
    const WEB: Baseline = Baseline {
        mean: [
            0.18, 0.05, 0.03, 0.74, 0.25, 0.45, 0.02, 0.35, 85.0, 120.0, 15.0, 12.0, 2.8, 25.0,
        ],
        std: [
            0.06, 0.02, 0.02, 0.10, 0.08, 0.10, 0.01, 0.08, 25.0, 35.0, 5.0, 4.0, 1.0, 2.0,
        ],
    };
    const CONDUCTOR: Baseline = Baseline {
        mean: [
            0.15, 0.06, 0.02, 0.77, 0.20, 0.42, 0.02, 0.40, 22.0, 18.0, 5.0, 4.0, 3.2, 25.0,
        ],
        std: [
            0.06, 0.02, 0.01, 0.08, 0.06, 0.08, 0.01, 0.08, 8.0, 6.0, 2.0, 2.0, 1.2, 2.0,
        ],
    };
    const INGEST: Baseline = Baseline {
        mean: [
            0.35, 0.10, 0.08, 0.47, 0.45, 0.62, 0.04, 0.65, 150.0, 95.0, 10.0, 8.0, 5.5, 25.0,
        ],
        std: [
            0.10, 0.03, 0.03, 0.12, 0.12, 0.12, 0.02, 0.12, 45.0, 30.0, 4.0, 3.0, 2.0, 2.0,
        ],
    };
    const RISK: Baseline = Baseline {
        mean: [
            0.55, 0.08, 0.02, 0.35, 0.60, 0.70, 0.05, 0.50, 12.0, 8.0, 3.0, 2.0, 8.2, 25.0,
        ],
        std: [
            0.15, 0.03, 0.01, 0.15, 0.15, 0.10, 0.03, 0.10, 4.0, 3.0, 1.0, 1.0, 2.5, 2.0,
        ],
    };
    const GENERIC: Baseline = Baseline {
        mean: [
            0.12, 0.04, 0.01, 0.83, 0.08, 0.35, 0.01, 0.30, 15.0, 12.0, 2.0, 2.0, 1.5, 25.0,
        ],
        std: [
            0.05, 0.02, 0.01, 0.08, 0.03, 0.08, 0.01, 0.08, 8.0, 6.0, 1.0, 1.0, 0.8, 2.0,
        ],
    };
    match profile {
        Profile::MlCompute => &ML,
        Profile::Database => &DB,
        Profile::WebApi => &WEB,
        Profile::ConductorMgmt => &CONDUCTOR,
        Profile::DataIngest => &INGEST,
        Profile::RiskAnalytics => &RISK,
        Profile::Generic => &GENERIC,
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|profile| profile.name() == name)
            .ok_or_else(|| format!("unknown profile `{name}`"))
    }
}

/// The metrics whose alert thresholds move above a profile's normal at the hour
/// ([`lift_above_normal`], [`Profile::normal_top_at`]) in the risk score and the predictive
/// rules. CPU is lifted too, by its own rule in each (the risk score's busy rows by
/// [`Profile::normal_busy_top_at`], the predictive cpu_user rule in [`profile_thresholds`]);
/// memory follows the profile's documented limit instead ([`Profile::memory_threshold`]).
pub const PROFILE_LIFTED: [Metric; 4] = [
    Metric::CpuIowaitPct,
    Metric::SwapUsedPct,
    Metric::DiskUsagePct,
    Metric::LoadAverage,
];

/// The memory limit of the generic profile, to which the original's memory thresholds
/// belong.
const GENERIC_MEMORY_LIMIT: f64 = 90.0;

/// Highest normal top a percentage's thresholds are lifted to: a profile whose normal reaches
/// 100 % still alerts in its last percent.
const HIGHEST_PERCENT_TOP: f64 = 99.0;

/// An alert threshold lifted above a profile's normal (profile-aware baselines).
///
/// `anchor` is where the metric starts to alert for a fleet whose normal is below it (the
/// lowest tier or the warning value), `top` the profile's normal top ([`Profile::normal_top`]).
/// When `top ≤ anchor` nothing moves. Otherwise the anchor moves to `top` and every threshold
/// above it keeps its share of the room above: for a percentage the headroom to 100 (with
/// `top` at most 99), `t' = 100 − (100 − t) · (100 − top) / (100 − anchor)`; for an unbounded
/// metric (load) the thresholds shift by `top − anchor`. Rounded to 0.01.
pub fn lift_above_normal(threshold: f64, anchor: f64, top: f64, kind: MetricKind) -> f64 {
    if top <= anchor {
        return threshold;
    }
    let lifted = match kind {
        MetricKind::Percent => {
            let top = top.min(HIGHEST_PERCENT_TOP);
            if top <= anchor || anchor >= 100.0 {
                return threshold;
            }
            100.0 - (100.0 - threshold) * (100.0 - top) / (100.0 - anchor)
        }
        _ => threshold + (top - anchor),
    };
    (lifted * 100.0).round() / 100.0
}

/// A metric's predictive warning and critical thresholds for a server of `profile`
/// (profile-aware thresholds; `sigmas ≤ 0` keeps them as given for every profile):
///
/// - `mem_used_pct` follows the profile's memory limit the way the risk score's memory rows
///   do ([`Profile::memory_threshold`]): the generic 90 / 98 become the limit and its share
///   of the headroom;
/// - the metrics of [`PROFILE_LIFTED`] and `cpu_user_pct` move above the profile's normal
///   top at UTC `hour` ([`Profile::normal_top_at`]: `sigmas` standard deviations above its
///   baseline mean, scaled by the hour's diurnal factor, so a risk_analytics server's
///   evening peak or a database's evening iowait is its normal), the warning value being
///   the anchor ([`lift_above_normal`]). The normal of the hour before counts too (the
///   higher of the two): a busy hour's load fades after the hour turns.
///
/// The alert router's predictive rules and the ground truth's crossings (`sim::labels`)
/// both use it, so "crossing a threshold" means one thing.
pub fn profile_thresholds(
    metric: Metric,
    warning: f64,
    critical: f64,
    profile: Profile,
    sigmas: f64,
    hour: u32,
) -> (f64, f64) {
    if sigmas <= 0.0 {
        return (warning, critical);
    }
    if metric == Metric::MemUsedPct {
        return (
            profile.memory_threshold(warning),
            profile.memory_threshold(critical),
        );
    }
    if !PROFILE_LIFTED.contains(&metric) && metric != Metric::CpuUserPct {
        return (warning, critical);
    }
    // A busy hour's normal holds through the next one: load fades after the hour turns,
    // and a forecast made just after it still carries the busy hour's level.
    let top = profile
        .normal_top_at(metric, sigmas, hour)
        .max(profile.normal_top_at(metric, sigmas, (hour + 23) % 24));
    let kind = metric.kind();
    (
        lift_above_normal(warning, warning, top, kind),
        lift_above_normal(critical, warning, top, kind),
    )
}

/// The UTC hour (0–23) of a unix time in milliseconds: the hour the diurnal curve is read
/// at.
pub fn utc_hour(unix_ms: i64) -> u32 {
    u32::try_from(unix_ms.div_euclid(1000).rem_euclid(86_400) / 3600).unwrap_or(0)
}

/// Whether `name` can be a server name: it becomes a NATS subject token, so it must be
/// non-empty, at most 128 bytes, and only ASCII letters, digits, `-` and `_`.
pub fn is_valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A threshold moves only when the profile's normal top is above the anchor; then the
    /// anchor lands on the top, higher thresholds keep their order and share of the headroom
    /// (a percentage's top at most 99), and load shifts.
    #[test]
    fn thresholds_lift_above_a_profile_normal() {
        let percent = MetricKind::Percent;
        assert_eq!(lift_above_normal(20.0, 10.0, 9.0, percent), 20.0);
        assert_eq!(lift_above_normal(10.0, 10.0, 27.5, percent), 27.5);
        // 100 − 80 · 72.5 / 90 = 35.555…
        assert_eq!(lift_above_normal(20.0, 10.0, 27.5, percent), 35.56);
        assert_eq!(lift_above_normal(80.0, 80.0, 102.5, percent), 99.0);
        assert_eq!(lift_above_normal(98.0, 80.0, 102.5, percent), 99.9);
        assert_eq!(lift_above_normal(12.0, 8.0, 14.45, MetricKind::Load), 18.45);
        let lifted: Vec<f64> = [10.0, 20.0, 30.0]
            .map(|t| lift_above_normal(t, 10.0, 27.5, percent))
            .to_vec();
        assert!(lifted.windows(2).all(|w| w[0] < w[1]), "{lifted:?}");
    }

    /// Normal tops from the catalog's baselines: a database's iowait 15 ± 5 %, a
    /// risk_analytics server busy 65 ± 15 %.
    #[test]
    fn normal_tops_come_from_the_baselines() {
        let db = Profile::Database.normal_top(Metric::CpuIowaitPct, 2.5);
        assert!((db - 27.5).abs() < 1e-9, "{db}");
        let busy = Profile::RiskAnalytics.normal_busy_top(2.5);
        assert!((busy - 102.5).abs() < 1e-9, "{busy}");
        let load = Profile::Generic.normal_top(Metric::LoadAverage, 2.5);
        assert!((load - 3.5).abs() < 1e-9, "{load}");
    }

    /// Metric order and names round-trip, and indices follow `ALL`.
    #[test]
    fn metric_names_round_trip() {
        for (index, metric) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(metric.index(), index);
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
        }
        assert_eq!(Metric::from_name("cpu_pct"), None);
    }

    /// The generator's name patterns, and the names the original mislabelled, map to one profile.
    #[test]
    fn profile_inference_is_consistent() {
        assert_eq!(Profile::infer("ppml0001"), Profile::MlCompute);
        assert_eq!(Profile::infer("ppdb003"), Profile::Database);
        assert_eq!(Profile::infer("ppweb001"), Profile::WebApi);
        assert_eq!(Profile::infer("ppapi001"), Profile::WebApi);
        assert_eq!(Profile::infer("ppcon01"), Profile::ConductorMgmt);
        assert_eq!(Profile::infer("ppetl001"), Profile::DataIngest);
        assert_eq!(Profile::infer("pprisk001"), Profile::RiskAnalytics);
        assert_eq!(Profile::infer("ppgen001"), Profile::Generic);
        assert_eq!(Profile::infer("Postgres-7"), Profile::Database);
        assert_eq!(Profile::infer("mystery"), Profile::Generic);
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
        }
    }

    /// Server names that would break a subject are refused.
    #[test]
    fn server_names_are_subject_tokens() {
        assert!(is_valid_server_name("ppweb001"));
        assert!(is_valid_server_name("db-7_a"));
        assert!(!is_valid_server_name(""));
        assert!(!is_valid_server_name("a.b"));
        assert!(!is_valid_server_name("a*"));
        assert!(!is_valid_server_name("a b"));
        assert!(!is_valid_server_name(">"));
    }

    /// The diurnal curve peaks in the late afternoon and stays within 0.5–1.5.
    #[test]
    fn diurnal_curve_shape() {
        for profile in Profile::ALL {
            for hour in 0..24 {
                let factor = profile.diurnal(hour);
                assert!((0.5..=1.5).contains(&factor));
            }
            assert!(profile.diurnal(17) > profile.diurnal(3), "{profile}");
        }
        assert_eq!(Profile::WebApi.diurnal(3), 0.5);
        assert!((Profile::RiskAnalytics.diurnal(17) - 1.5).abs() < 1e-12);
    }

    /// Profile-aware predictive thresholds: memory follows the profile's limit, iowait and
    /// cpu_user move above the profile's normal at the hour, a generic server keeps the
    /// catalog's numbers, and `sigmas = 0` keeps them for everyone.
    #[test]
    fn profile_thresholds_follow_limit_normal_and_hour() {
        let mem = Metric::MemUsedPct;
        assert_eq!(
            profile_thresholds(mem, 90.0, 98.0, Profile::WebApi, 2.5, 12),
            (85.0, 97.0)
        );
        assert_eq!(
            profile_thresholds(mem, 90.0, 98.0, Profile::Generic, 2.5, 12),
            (90.0, 98.0)
        );
        let user = Metric::CpuUserPct;
        // risk_analytics: (55 + 2.5 · 15) % = 92.5 % at night (factor 0.8 → 74: below 85).
        assert_eq!(
            profile_thresholds(user, 85.0, 95.0, Profile::RiskAnalytics, 2.5, 3),
            (85.0, 95.0)
        );
        let (warning, critical) =
            profile_thresholds(user, 85.0, 95.0, Profile::RiskAnalytics, 2.5, 17);
        assert_eq!((warning, critical), (99.0, 99.67));
        // A database's iowait top is 27.5 % at 08 h (factor 1.0), 39.6 % at 17 h (1.44).
        let iowait = Metric::CpuIowaitPct;
        assert_eq!(
            profile_thresholds(iowait, 20.0, 30.0, Profile::Database, 2.5, 8).0,
            27.5
        );
        assert_eq!(
            profile_thresholds(iowait, 20.0, 30.0, Profile::Database, 2.5, 17).0,
            39.6
        );
        for profile in Profile::ALL {
            for metric in [mem, user, iowait] {
                assert_eq!(
                    profile_thresholds(metric, 20.0, 30.0, profile, 0.0, 17),
                    (20.0, 30.0)
                );
            }
        }
        assert_eq!(utc_hour((17 * 3600 + 86_400 * 3 + 59) * 1000), 17);
        assert_eq!(utc_hour(-1), 23);
    }
}
