//! From node_exporter series to fleetcast metrics: the derivations shared by the
//! [`node_exporter`](crate::actors::node_exporter) scraper and the
//! [`remote_write`](crate::actors::remote_write) receiver.
//!
//! Both sources deliver the same series (node_exporter's names and labels) with a timestamp;
//! [`NodeConfig::classify`] keeps the few this module uses and [`NodeState`] turns one host's
//! series into metric values, per timestamp:
//!
//! | metric | from | how |
//! |---|---|---|
//! | `cpu_user_pct`, `cpu_sys_pct`, `cpu_iowait_pct`, `cpu_idle_pct` | `node_cpu_seconds_total{cpu,mode}` | each mode's share of the increase of all modes over all CPUs since the previous timestamp: user = `user` + `nice`, sys = `system` + `irq` + `softirq`; `steal` counts in the total only |
//! | `mem_used_pct` | `node_memory_MemTotal_bytes`, `node_memory_MemAvailable_bytes` | 100 × (1 − available / total) |
//! | `swap_used_pct` | `node_memory_SwapTotal_bytes`, `node_memory_SwapFree_bytes` | 100 × (1 − free / total); 0 on a host without swap |
//! | `disk_usage_pct` | `node_filesystem_{size,free,avail}_bytes{mountpoint}` | `df`'s Use%: used / (used + avail), used = size − free |
//! | `net_in_mb_s`, `net_out_mb_s` | `node_network_{receive,transmit}_bytes_total{device}` | increase per second over every device but the excluded ones (`lo`), in 10⁶ bytes |
//! | `load_average` | `node_load1` (or `node_load5`, `node_load15`) | as is |
//! | `uptime_days` | `node_boot_time_seconds` | whole days from boot to the sample's time, at most 365 |
//! | one of the close-wait metrics | `node_tcp_connection_states{state="close_wait"}` | as is; the tcpstat collector lists only states that have sockets, so a page whose tcpstat collector succeeded without the series means 0 |
//!
//! `java_cpu_pct` and the other close-wait metric have no node_exporter source and are never
//! published.
//!
//! **Absent, never invented.** A metric whose series are missing is left out. Rates need two
//! timestamps, so a host's first timestamp gives only the gauges. A counter that went down
//! (the host rebooted, a driver reset its counters) is a reset: that rate is left out once,
//! and the next timestamp rates from the new values.
//!
//! **Complete series sets.** The scraper hands over a whole page at once
//! ([`NodeState::ready`] with `closed_through`). A Prometheus remote-write stream may split
//! one scrape's series over several requests, so for the receiver a rate over many series
//! (every CPU and mode, every network device) is computed only once every series seen at the
//! previous timestamp has arrived for this one; a timestamp that can no longer complete
//! (a newer one has started) is skipped. Values for a host are only ever published in time
//! order: a metric that completes for a timestamp older than one already published is
//! dropped.

use crate::catalog::Metric;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The node_exporter series a derivation uses. Series of one counter group (CPU modes,
/// network devices) carry their label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Series {
    /// `node_cpu_seconds_total{cpu, mode}`.
    Cpu {
        /// The `cpu` label.
        cpu: Box<str>,
        /// The `mode` label.
        mode: Box<str>,
    },
    /// `node_memory_MemTotal_bytes`.
    MemTotal,
    /// `node_memory_MemAvailable_bytes`.
    MemAvailable,
    /// `node_memory_SwapTotal_bytes`.
    SwapTotal,
    /// `node_memory_SwapFree_bytes`.
    SwapFree,
    /// `node_filesystem_size_bytes` of the configured mount point.
    FsSize,
    /// `node_filesystem_free_bytes` of the configured mount point.
    FsFree,
    /// `node_filesystem_avail_bytes` of the configured mount point.
    FsAvail,
    /// `node_network_receive_bytes_total{device}` of a counted device.
    NetRx(Box<str>),
    /// `node_network_transmit_bytes_total{device}` of a counted device.
    NetTx(Box<str>),
    /// The configured load average (`node_load1`, `node_load5` or `node_load15`).
    Load,
    /// `node_boot_time_seconds`.
    BootTime,
    /// `node_scrape_collector_success{collector="tcpstat"}`: 1 when the tcpstat collector ran.
    TcpstatUp,
    /// `node_tcp_connection_states{state="close_wait"}`.
    CloseWait,
}

/// Which load average becomes `load_average`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadWindow {
    /// `node_load1`, the 1-minute average.
    One,
    /// `node_load5`.
    Five,
    /// `node_load15`.
    Fifteen,
}

impl LoadWindow {
    /// Parses `load1`, `load5` or `load15`.
    pub fn from_setting(text: &str) -> Option<LoadWindow> {
        match text {
            "load1" => Some(LoadWindow::One),
            "load5" => Some(LoadWindow::Five),
            "load15" => Some(LoadWindow::Fifteen),
            _ => None,
        }
    }

    /// The settings' word for it (`load1`, `load5`, `load15`).
    pub fn setting_name(self) -> &'static str {
        match self {
            LoadWindow::One => "load1",
            LoadWindow::Five => "load5",
            LoadWindow::Fifteen => "load15",
        }
    }

    /// The node_exporter series name.
    pub fn series_name(self) -> &'static str {
        match self {
            LoadWindow::One => "node_load1",
            LoadWindow::Five => "node_load5",
            LoadWindow::Fifteen => "node_load15",
        }
    }
}

/// How series become metrics: the choices a deployment makes (settings `[node_metrics]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The mount point whose filesystem is `disk_usage_pct`.
    pub mountpoint: String,
    /// The load average published as `load_average`.
    pub load: LoadWindow,
    /// Network devices left out of the network rates.
    pub exclude_devices: Vec<String>,
    /// The metric that carries the host's close-wait count, or none.
    pub close_wait: Option<Metric>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            mountpoint: "/".into(),
            load: LoadWindow::One,
            exclude_devices: vec!["lo".into()],
            close_wait: Some(Metric::FrontCloseWait),
        }
    }
}

/// The metric name of node_exporter's host identity series; its `nodename` label is the
/// host name (`uname -n`).
pub const UNAME_SERIES: &str = "node_uname_info";

impl NodeConfig {
    /// The series this module uses for a series called `name` with labels `label`, or `None`
    /// for every other series (most of a node_exporter page).
    pub fn classify<'a>(
        &self,
        name: &str,
        label: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Series> {
        let series = match name {
            "node_cpu_seconds_total" => Series::Cpu {
                cpu: label("cpu")?.into(),
                mode: label("mode")?.into(),
            },
            "node_memory_MemTotal_bytes" => Series::MemTotal,
            "node_memory_MemAvailable_bytes" => Series::MemAvailable,
            "node_memory_SwapTotal_bytes" => Series::SwapTotal,
            "node_memory_SwapFree_bytes" => Series::SwapFree,
            "node_filesystem_size_bytes"
            | "node_filesystem_free_bytes"
            | "node_filesystem_avail_bytes" => {
                if label("mountpoint")? != self.mountpoint {
                    return None;
                }
                match name {
                    "node_filesystem_size_bytes" => Series::FsSize,
                    "node_filesystem_free_bytes" => Series::FsFree,
                    _ => Series::FsAvail,
                }
            }
            "node_network_receive_bytes_total" | "node_network_transmit_bytes_total" => {
                let device = label("device")?;
                if self
                    .exclude_devices
                    .iter()
                    .any(|excluded| excluded == device)
                {
                    return None;
                }
                if name == "node_network_receive_bytes_total" {
                    Series::NetRx(device.into())
                } else {
                    Series::NetTx(device.into())
                }
            }
            "node_boot_time_seconds" => Series::BootTime,
            "node_scrape_collector_success" if label("collector")? == "tcpstat" => {
                Series::TcpstatUp
            }
            "node_tcp_connection_states" if label("state")? == "close_wait" => {
                self.close_wait?;
                Series::CloseWait
            }
            _ if name == self.load.series_name() => Series::Load,
            _ => return None,
        };
        Some(series)
    }
}

/// One derivation: the metrics it gives and the bit that marks it done for a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derivation {
    Cpu,
    Mem,
    Swap,
    Disk,
    NetIn,
    NetOut,
    Load,
    Uptime,
    CloseWait,
}

impl Derivation {
    const ALL: [Derivation; 9] = [
        Derivation::Cpu,
        Derivation::Mem,
        Derivation::Swap,
        Derivation::Disk,
        Derivation::NetIn,
        Derivation::NetOut,
        Derivation::Load,
        Derivation::Uptime,
        Derivation::CloseWait,
    ];

    fn bit(self) -> u16 {
        1 << self as u16
    }

    const ALL_BITS: u16 = (1 << 9) - 1;
}

/// A counter group: the series of one rate (every CPU and mode, every network device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Cpu,
    NetRx,
    NetTx,
}

impl Group {
    fn member(self, series: &Series) -> bool {
        matches!(
            (self, series),
            (Group::Cpu, Series::Cpu { .. })
                | (Group::NetRx, Series::NetRx(_))
                | (Group::NetTx, Series::NetTx(_))
        )
    }

    fn index(self) -> usize {
        self as usize
    }

    fn derivation(self) -> Derivation {
        match self {
            Group::Cpu => Derivation::Cpu,
            Group::NetRx => Derivation::NetIn,
            Group::NetTx => Derivation::NetOut,
        }
    }
}

/// The values that arrived for one timestamp, and which derivations are settled for it.
#[derive(Debug, Default)]
struct Open {
    values: HashMap<Series, f64>,
    done: u16,
}

/// What a counter group remembers between timestamps.
#[derive(Debug, Default)]
struct Counters {
    /// The series that made up the last complete timestamp (`None` before the first).
    expected: Option<HashSet<Series>>,
    /// The last complete timestamp's values: the base of the next rate.
    base: Option<(i64, HashMap<Series, f64>)>,
}

/// Open timestamps kept per host while their series arrive; older ones are dropped.
const MAX_OPEN: usize = 8;

/// What one host's series have produced so far; see the module documentation.
#[derive(Debug, Default)]
pub struct NodeState {
    open: BTreeMap<i64, Open>,
    groups: [Counters; 3],
    /// The newest timestamp published: nothing older goes out after it.
    published_ms: Option<i64>,
    /// Counter resets seen (a rate left out).
    resets: u64,
}

/// A metric outcome for one timestamp.
enum Outcome {
    /// Not all series are here yet.
    Wait,
    /// Settled: these metrics (possibly none).
    Done(Vec<(Metric, f64)>),
}

impl NodeState {
    /// A host with no history.
    pub fn new() -> NodeState {
        NodeState::default()
    }

    /// Counter resets seen so far (each left one rate out).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Records `value` of `series` at `ts_ms`. Non-finite values are ignored.
    pub fn add(&mut self, ts_ms: i64, series: Series, value: f64) {
        if !value.is_finite() {
            return;
        }
        let open = self.open.entry(ts_ms).or_default();
        // A series of a group already settled at this timestamp came late: expect it next time.
        for group in [Group::Cpu, Group::NetRx, Group::NetTx] {
            if group.member(&series)
                && open.done & group.derivation().bit() != 0
                && let Some(expected) = &mut self.groups[group.index()].expected
            {
                expected.insert(series.clone());
            }
        }
        open.values.insert(series, value);
    }

    /// The metrics that are now settled, per timestamp, oldest first (timestamps with none
    /// left out). `closed_through`: every timestamp up to it has all its series (a scraped
    /// page); `None` when more may still come (remote write).
    pub fn ready(
        &mut self,
        config: &NodeConfig,
        closed_through: Option<i64>,
    ) -> Vec<(i64, BTreeMap<String, f64>)> {
        let mut out = Vec::new();
        let timestamps: Vec<i64> = self.open.keys().copied().collect();
        for (position, &ts_ms) in timestamps.iter().enumerate() {
            let closed = closed_through.is_some_and(|through| ts_ms <= through);
            let late = self.published_ms.is_some_and(|published| ts_ms < published);
            let newer = &timestamps[position + 1..];
            let mut metrics = BTreeMap::new();
            for derivation in Derivation::ALL {
                let done = self.open[&ts_ms].done;
                if done & derivation.bit() != 0 {
                    continue;
                }
                let outcome = match derivation {
                    Derivation::Cpu => self.counter_group(Group::Cpu, ts_ms, closed, newer),
                    Derivation::NetIn => self.counter_group(Group::NetRx, ts_ms, closed, newer),
                    Derivation::NetOut => self.counter_group(Group::NetTx, ts_ms, closed, newer),
                    gauge => gauge_outcome(gauge, ts_ms, &self.open[&ts_ms].values, closed, config),
                };
                if let Outcome::Done(values) = outcome {
                    self.open.get_mut(&ts_ms).expect("open timestamp").done |= derivation.bit();
                    if !late {
                        for (metric, value) in values {
                            metrics.insert(metric.name().to_string(), value);
                        }
                    }
                }
            }
            if !metrics.is_empty() {
                self.published_ms = Some(ts_ms);
                out.push((ts_ms, metrics));
            }
        }
        self.open.retain(|&ts_ms, open| {
            open.done != Derivation::ALL_BITS
                && closed_through.is_none_or(|through| ts_ms > through)
        });
        while self.open.len() > MAX_OPEN {
            self.open.pop_first();
        }
        out
    }

    /// Settles a counter group at `ts_ms` when its series set is complete (or can no longer
    /// become complete), computing the rate against the previous complete timestamp.
    fn counter_group(&mut self, group: Group, ts_ms: i64, closed: bool, newer: &[i64]) -> Outcome {
        let arrived: HashMap<Series, f64> = self.open[&ts_ms]
            .values
            .iter()
            .filter(|(series, _)| group.member(series))
            .map(|(series, value)| (series.clone(), *value))
            .collect();
        let newer_started = newer.iter().any(|later| {
            self.open[later]
                .values
                .keys()
                .any(|series| group.member(series))
        });
        let state = &mut self.groups[group.index()];
        if arrived.is_empty() {
            return if closed || newer_started {
                Outcome::Done(Vec::new())
            } else {
                Outcome::Wait
            };
        }
        let complete = closed
            || state
                .expected
                .as_ref()
                .is_some_and(|expected| expected.iter().all(|series| arrived.contains_key(series)));
        if !complete {
            if !newer_started {
                return Outcome::Wait;
            }
            // This timestamp can no longer complete (series went away, or arrived too late):
            // skip it, and expect only what did arrive from now on. Before any expectation,
            // what arrived is taken as the whole set and becomes the base.
            match &mut state.expected {
                Some(expected) => expected.retain(|series| arrived.contains_key(series)),
                None => {
                    state.expected = Some(arrived.keys().cloned().collect());
                    state.base = Some((ts_ms, arrived));
                }
            }
            return Outcome::Done(Vec::new());
        }
        let mut values = Vec::new();
        if let Some((base_ms, base)) = state.base.as_ref().filter(|(base_ms, _)| *base_ms < ts_ms) {
            match group_rate(group, ts_ms - base_ms, base, &arrived) {
                Some(rate) => values = rate,
                None => self.resets += 1,
            }
        }
        if state
            .base
            .as_ref()
            .is_none_or(|(base_ms, _)| *base_ms < ts_ms)
        {
            state.expected = Some(arrived.keys().cloned().collect());
            state.base = Some((ts_ms, arrived));
        }
        Outcome::Done(values)
    }
}

/// The rate of a counter group between `base` and `now`, `elapsed_ms` apart, over the series
/// in both; `None` on a counter reset (a value went down) or no increase at all.
fn group_rate(
    group: Group,
    elapsed_ms: i64,
    base: &HashMap<Series, f64>,
    now: &HashMap<Series, f64>,
) -> Option<Vec<(Metric, f64)>> {
    let mut increases = Vec::with_capacity(now.len());
    for (series, value) in now {
        if let Some(before) = base.get(series) {
            let increase = value - before;
            if increase < 0.0 {
                return None;
            }
            increases.push((series, increase));
        }
    }
    if increases.is_empty() {
        return Some(Vec::new());
    }
    match group {
        Group::Cpu => {
            let (mut user, mut sys, mut iowait, mut idle, mut total) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (series, increase) in increases {
                let Series::Cpu { mode, .. } = series else {
                    continue;
                };
                match &**mode {
                    "user" | "nice" => user += increase,
                    "system" | "irq" | "softirq" => sys += increase,
                    "iowait" => iowait += increase,
                    "idle" => idle += increase,
                    _ => {}
                }
                total += increase;
            }
            if total <= 0.0 {
                return Some(Vec::new());
            }
            let pct = |part: f64| (100.0 * part / total).clamp(0.0, 100.0);
            Some(vec![
                (Metric::CpuUserPct, pct(user)),
                (Metric::CpuSysPct, pct(sys)),
                (Metric::CpuIowaitPct, pct(iowait)),
                (Metric::CpuIdlePct, pct(idle)),
            ])
        }
        Group::NetRx | Group::NetTx => {
            if elapsed_ms <= 0 {
                return Some(Vec::new());
            }
            let bytes: f64 = increases.iter().map(|(_, increase)| increase).sum();
            let rate = bytes / (elapsed_ms as f64 / 1000.0) / 1e6;
            let metric = if group == Group::NetRx {
                Metric::NetInMbS
            } else {
                Metric::NetOutMbS
            };
            Some(vec![(metric, rate)])
        }
    }
}

/// Settles a gauge derivation: its value when its series are here, nothing when they never
/// will be (`closed`), else wait.
fn gauge_outcome(
    derivation: Derivation,
    ts_ms: i64,
    values: &HashMap<Series, f64>,
    closed: bool,
    config: &NodeConfig,
) -> Outcome {
    let need = |series: &[Series]| -> Option<Vec<f64>> {
        series
            .iter()
            .map(|series| values.get(series).copied())
            .collect()
    };
    let pct = |value: f64| value.clamp(0.0, 100.0);
    let inputs: &[Series] = match derivation {
        Derivation::Mem => &[Series::MemTotal, Series::MemAvailable],
        Derivation::Swap => &[Series::SwapTotal, Series::SwapFree],
        Derivation::Disk => &[Series::FsSize, Series::FsFree, Series::FsAvail],
        Derivation::Load => &[Series::Load],
        Derivation::Uptime => &[Series::BootTime],
        Derivation::CloseWait => {
            let Some(metric) = config.close_wait else {
                return Outcome::Done(Vec::new());
            };
            if let Some(&count) = values.get(&Series::CloseWait) {
                return Outcome::Done(vec![(metric, count.max(0.0))]);
            }
            if !closed {
                return Outcome::Wait;
            }
            // A whole page: the tcpstat collector lists only states that have sockets.
            return Outcome::Done(match values.get(&Series::TcpstatUp) {
                Some(&1.0) => vec![(metric, 0.0)],
                _ => Vec::new(),
            });
        }
        Derivation::Cpu | Derivation::NetIn | Derivation::NetOut => {
            unreachable!("counter groups are settled by NodeState::counter_group")
        }
    };
    let Some(inputs) = need(inputs) else {
        return if closed {
            Outcome::Done(Vec::new())
        } else {
            Outcome::Wait
        };
    };
    let value = match derivation {
        Derivation::Mem => {
            let (total, available) = (inputs[0], inputs[1]);
            (total > 0.0).then(|| (Metric::MemUsedPct, pct(100.0 * (1.0 - available / total))))
        }
        Derivation::Swap => {
            let (total, free) = (inputs[0], inputs[1]);
            let used = if total > 0.0 {
                100.0 * (1.0 - free / total)
            } else {
                0.0
            };
            Some((Metric::SwapUsedPct, pct(used)))
        }
        Derivation::Disk => {
            let (size, free, available) = (inputs[0], inputs[1], inputs[2]);
            let used = size - free;
            (used + available > 0.0)
                .then(|| (Metric::DiskUsagePct, pct(100.0 * used / (used + available))))
        }
        Derivation::Load => Some((Metric::LoadAverage, inputs[0].max(0.0))),
        Derivation::Uptime => {
            let seconds = ts_ms as f64 / 1000.0 - inputs[0];
            Some((
                Metric::UptimeDays,
                (seconds / 86_400.0).floor().clamp(0.0, 365.0),
            ))
        }
        _ => None,
    };
    Outcome::Done(value.into_iter().collect())
}

/// The fleetcast server name for a host: the label `name` when the source gives one, else the
/// target's host when it is a DNS name (not `localhost`, not an IP address), else the host's
/// own name from `node_uname_info`. Characters a subject token cannot hold become `-`;
/// `None` when nothing usable is known yet.
pub fn server_name(
    label: Option<&str>,
    target_host: &str,
    nodename: Option<&str>,
) -> Option<String> {
    let host_is_name = !target_host.is_empty()
        && target_host != "localhost"
        && target_host.parse::<std::net::IpAddr>().is_err()
        && !target_host.starts_with('[');
    let chosen = label
        .filter(|label| !label.is_empty())
        .or(host_is_name.then_some(target_host))
        .or(nodename.filter(|name| !name.is_empty()))?;
    let token: String = chosen
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    crate::catalog::is_valid_server_name(&token).then_some(token)
}

/// The host part of `host:port` (`[v6]:port` keeps its brackets).
pub fn host_of(address: &str) -> &str {
    if address.starts_with('[') {
        return address
            .split_once(']')
            .map_or(address, |(host, _)| &address[..host.len() + 1]);
    }
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

#[cfg(test)]
mod tests;
