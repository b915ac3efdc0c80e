//! The soak's samples, its CSV curve and its summary: lag and RSS per minute, their trend
//! (first and last minute, least-squares slope), CPU per process, and the loss check.

use crate::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which part of the run a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The stages started and are catching up.
    Warmup,
    /// Measured.
    Soak,
    /// The generator stopped; the consumers finish what is queued.
    Settle,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Soak => "soak",
            Phase::Settle => "settle",
        }
    }
}

/// One look at the system: seconds since the bench started, and named values.
#[derive(Debug, Clone)]
pub struct Sample {
    t_s: f64,
    phase: Phase,
    values: BTreeMap<String, f64>,
}

impl Sample {
    /// A sample taken `t_s` seconds after the start.
    pub fn new(t_s: f64, values: BTreeMap<String, f64>) -> Self {
        Sample {
            t_s,
            phase: Phase::Warmup,
            values,
        }
    }

    /// The same, placed in `phase`.
    pub fn in_phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Seconds since the bench started.
    pub fn t_s(&self) -> f64 {
        self.t_s
    }

    /// Whether the sample has `key` (a stage that did not answer in time has no counters).
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// A value, 0 when the sample does not have it.
    pub fn value(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }
}

/// How the run went, for the summary.
pub struct Run {
    pub args: Args,
    pub backfill_s: f64,
    pub warmup_s: f64,
    pub settle_s: f64,
    pub settled: bool,
    pub exits: BTreeMap<String, String>,
    pub csv: PathBuf,
    pub logs: PathBuf,
}

/// Writes every sample as one CSV row: `t_s`, `phase`, then every value any sample has
/// (sorted by name; empty where a sample lacks it).
///
/// # Errors
/// When the file cannot be written.
pub fn write_csv(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let columns: BTreeSet<&str> = samples
        .iter()
        .flat_map(|sample| sample.values.keys().map(String::as_str))
        .collect();
    let mut writer = csv::Writer::from_path(path)?;
    let mut header = vec!["t_s", "phase"];
    header.extend(columns.iter().copied());
    writer.write_record(&header)?;
    for sample in samples {
        let mut row = vec![format!("{:.1}", sample.t_s), sample.phase.name().into()];
        row.extend(columns.iter().map(|column| {
            sample
                .values
                .get(*column)
                .map_or_else(String::new, |value| {
                    format!("{value:.2}").trim_end_matches(".00").to_string()
                })
        }));
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
}

/// The progress bar's message: simulated step, lag per stage, total RSS, load.
pub fn progress_line(sample: &Sample) -> String {
    let rss: f64 = sample
        .values
        .iter()
        .filter(|(key, _)| key.starts_with("rss_mb."))
        .map(|(_, value)| value)
        .sum();
    format!(
        "step {} lag wk {} pred {} risk {} alert {} gw {} | rss {:.0} MB | load {:.1}",
        sample.value("generator.step"),
        sample.value("lag.window_keeper"),
        sample.value("lag.predictor"),
        sample.value("lag.risk_scorer"),
        sample.value("lag.alert_router"),
        sample.value("lag.gateway"),
        rss,
        sample.value("load1"),
    )
}

/// The stages whose lag is followed, and their column titles.
const LAGS: [(&str, &str); 5] = [
    ("lag.window_keeper", "keeper"),
    ("lag.predictor", "predictor"),
    ("lag.risk_scorer", "risk"),
    ("lag.alert_router", "alert"),
    ("lag.gateway", "gateway"),
];

/// Processes in the order of the pipeline.
const PROCESSES: [&str; 7] = [
    "nats-server",
    "generator",
    "window_keeper",
    "predictor",
    "risk_scorer",
    "alert_router",
    "gateway",
];

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| {
        (sum + value, count + 1)
    });
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Least-squares slope of `key` over `samples`, per minute.
fn slope_per_minute(samples: &[&Sample], key: &str) -> f64 {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|sample| Some((sample.t_s / 60.0, *sample.values.get(key)?)))
        .collect();
    if points.len() < 2 {
        return f64::NAN;
    }
    let mean_t = mean(points.iter().map(|(t, _)| *t));
    let mean_v = mean(points.iter().map(|(_, v)| *v));
    let covariance: f64 = points
        .iter()
        .map(|(t, v)| (t - mean_t) * (v - mean_v))
        .sum();
    let variance: f64 = points.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    covariance / variance
}

/// The per-rate of a counter between two samples, per second.
fn rate(from: &Sample, to: &Sample, key: &str) -> f64 {
    (to.value(key) - from.value(key)) / (to.t_s - from.t_s).max(f64::EPSILON)
}

/// Work queue jobs replaced by a newer job of the same server before a worker took them:
/// queued − taken − still queued.
fn replaced_jobs(sample: &Sample) -> f64 {
    sample.value("window_keeper.jobs_published")
        - sample.value("predictor.received")
        - sample.value("stream.predict_jobs.messages")
}

/// The summary: settings, phases, the per-minute curve, trends, CPU, loss check.
pub fn summary(run: &Run, samples: &[Sample]) -> String {
    let args = &run.args;
    let mut out = String::new();
    let soak: Vec<&Sample> = samples.iter().filter(|s| s.phase == Phase::Soak).collect();
    let speed = 300_000.0 / args.step_ms as f64;
    let _ = writeln!(
        out,
        "\n## soak: {} servers, one 5-minute step every {} ms ({speed:.0}x), {} min measured",
        args.servers, args.step_ms, args.minutes
    );
    if let Ok(limit) = std::env::var("GOMEMLIMIT") {
        let _ = writeln!(out, "nats-server with GOMEMLIMIT={limit}");
    }
    if !args.settings.is_empty() {
        let _ = writeln!(out, "settings: {}", args.settings.join(" "));
    }
    let _ = writeln!(
        out,
        "backfill {:.0} s, warm-up {:.0} s, settle {:.0} s ({}); load average {:.2} at the start of the soak, {:.2} at its end",
        run.backfill_s,
        run.warmup_s,
        run.settle_s,
        if run.settled {
            "every consumer caught up"
        } else {
            "NOT caught up"
        },
        soak.first().map_or(f64::NAN, |s| s.value("load1")),
        soak.last().map_or(f64::NAN, |s| s.value("load1")),
    );
    let Some(first) = soak.first() else {
        let _ = writeln!(out, "no soak samples");
        return out;
    };
    let start = first.t_s;
    let minutes = (args.minutes.ceil() as usize).max(1);
    let mut groups: Vec<Vec<&Sample>> = vec![Vec::new(); minutes];
    for sample in &soak {
        let minute = (((sample.t_s - start) / 60.0) as usize).min(minutes - 1);
        groups[minute].push(sample);
    }

    // Per minute.
    let _ = write!(
        out,
        "\n| min | load | steps | samples/s | forecasts/s | jobs replaced/s |"
    );
    for (_, title) in LAGS {
        let _ = write!(out, " lag {title} |");
    }
    for process in PROCESSES {
        let _ = write!(out, " RSS {process} MB |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|{}", "---:|".repeat(6 + LAGS.len() + PROCESSES.len()));
    let mut before: &Sample = first;
    for (minute, group) in groups.iter().enumerate() {
        let Some(last) = group.last() else { continue };
        let means = |key: &str| mean(group.iter().filter_map(|s| s.values.get(key).copied()));
        let _ = write!(
            out,
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            minute + 1,
            means("load1"),
            last.value("generator.step") - before.value("generator.step"),
            rate(before, last, "stream.metrics.messages"),
            rate(before, last, "predictor.published"),
            (replaced_jobs(last) - replaced_jobs(before)) / (last.t_s - before.t_s).max(1.0),
        );
        for (key, _) in LAGS {
            let _ = write!(out, " {:.0} |", means(key));
        }
        for process in PROCESSES {
            let _ = write!(out, " {:.0} |", means(&format!("rss_mb.{process}")));
        }
        let _ = writeln!(out);
        before = last;
    }
    let _ = writeln!(
        out,
        "\n(steps: simulated steps the generator made in the minute, {:.0} at {speed:.0}x; samples/s: samples stored; lag: messages waiting for the stage, mean of the minute; jobs replaced: predict jobs a newer job of the same server replaced in the work queue before a worker took them, i.e. forecasts skipped)",
        60_000.0 / args.step_ms as f64
    );

    // Trends.
    let _ = writeln!(
        out,
        "\n| series | first minute | last minute | slope per minute |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let first_minute = &groups[0];
    let last_minute = groups
        .iter()
        .rev()
        .find(|g| !g.is_empty())
        .unwrap_or(first_minute);
    let mut series: Vec<String> = LAGS.iter().map(|(key, _)| key.to_string()).collect();
    series.push("lag.total".into());
    series.extend(PROCESSES.iter().map(|p| format!("rss_mb.{p}")));
    for key in &series {
        let of =
            |group: &Vec<&Sample>| mean(group.iter().filter_map(|s| s.values.get(key).copied()));
        let _ = writeln!(
            out,
            "| {key} | {:.1} | {:.1} | {:+.2} |",
            of(first_minute),
            of(last_minute),
            slope_per_minute(&soak, key)
        );
    }
    let lag_growth = slope_per_minute(&soak, "lag.total") * args.minutes;
    let _ = writeln!(
        out,
        "\nlag: {} (least-squares growth over the soak {lag_growth:+.0} messages; one step is {} samples)",
        if lag_growth < f64::from(args.servers) {
            "flat"
        } else {
            "GROWING"
        },
        args.servers
    );

    // CPU.
    let _ = write!(out, "CPU, % of one core, mean over the soak:");
    for process in PROCESSES {
        let key = format!("cpu_pct.{process}");
        let cpu = mean(soak.iter().filter_map(|s| s.values.get(&key).copied()));
        if cpu.is_finite() {
            let _ = write!(out, " {process} {cpu:.0}");
        }
    }
    let _ = writeln!(out);

    out.push_str(&loss_check(run, samples.last().unwrap_or(first)));
    let _ = writeln!(out, "\nexits: {:?}", run.exits);
    let _ = writeln!(
        out,
        "curve: {}; logs: {}",
        run.csv.display(),
        run.logs.display()
    );
    out
}

/// Balances the counters of the last sample (every consumer caught up when `run.settled`).
fn loss_check(run: &Run, last: &Sample) -> String {
    let mut out = String::new();
    let ok = |good: bool| if good { "ok" } else { "FAIL" };
    let stored = last.value("stream.metrics.messages");
    let taken = last.value("window_keeper.replayed") + last.value("window_keeper.received");
    let keeper_lag = last.value("lag.window_keeper");
    let _ = writeln!(
        out,
        "\n| loss check (counters after the generator stopped) | numbers | |"
    );
    let _ = writeln!(out, "|---|---|---|");
    let _ = writeln!(
        out,
        "| samples generated (stored in METRICS) = taken by the window keeper + still queued | {stored:.0} = {taken:.0} (replayed {:.0} + live {:.0}) + {keeper_lag:.0} | {} |",
        last.value("window_keeper.replayed"),
        last.value("window_keeper.received"),
        ok(stored == taken + keeper_lag)
    );
    let rejected = last.value("window_keeper.rejected");
    let _ = writeln!(
        out,
        "| windowed: accepted = every sample taken, none rejected | {:.0} of {taken:.0}, rejected {rejected:.0} | {} |",
        last.value("window_keeper.accepted"),
        ok(last.value("window_keeper.accepted") == taken && rejected == 0.0)
    );
    let jobs = last.value("window_keeper.jobs_published");
    let taken_jobs = last.value("predictor.received");
    let queued = last.value("stream.predict_jobs.messages");
    let _ = writeln!(
        out,
        "| predict jobs queued = taken by the predictor + replaced by a newer job + still queued | {jobs:.0} = {taken_jobs:.0} + {:.0} + {queued:.0} | {} |",
        replaced_jobs(last),
        ok(replaced_jobs(last) >= 0.0)
    );
    let forecasts = last.value("predictor.published");
    let errors = last.value("predictor.errors") + last.value("predictor.rejected");
    let _ = writeln!(
        out,
        "| forecasts stored = jobs taken, no job handed back or refused | {forecasts:.0} of {taken_jobs:.0} (duplicates {:.0}, handed back or refused {errors:.0}) | {} |",
        last.value("predictor.duplicates"),
        ok(forecasts + last.value("predictor.duplicates") >= taken_jobs && errors == 0.0)
    );
    for stage in ["risk_scorer", "alert_router"] {
        let bad =
            last.value(&format!("{stage}.rejected")) + last.value(&format!("{stage}.skipped"));
        let lag = last.value(&format!("lag.{stage}"));
        let _ = writeln!(
            out,
            "| {stage}: every input taken and acknowledged, none skipped or refused | received {:.0}, published {:.0}, still queued {lag:.0}, skipped {:.0}, rejected {:.0}, superseded {:.0} | {} |",
            last.value(&format!("{stage}.received")),
            last.value(&format!("{stage}.published")),
            last.value(&format!("{stage}.skipped")),
            last.value(&format!("{stage}.rejected")),
            last.value(&format!("{stage}.superseded")),
            ok(bad == 0.0 && lag == 0.0)
        );
    }
    let publish_errors: f64 = last
        .values
        .iter()
        .filter(|(key, _)| key.ends_with(".publish_errors"))
        .map(|(_, value)| value)
        .sum();
    let dead = last.value("dead_letters");
    let _ = writeln!(
        out,
        "| dead letters on rejected.>, publish errors | {dead:.0}, {publish_errors:.0} | {} |",
        ok(dead == 0.0 && publish_errors == 0.0)
    );
    if !run.settled {
        let _ = writeln!(
            out,
            "\nThe consumers had not caught up after {:.0} s: \"still queued\" is lag, not loss.",
            run.settle_s
        );
    }
    out
}
