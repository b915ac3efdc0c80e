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
}
