//! Soak (issue 12, item 6): a fleet at 60x speed for minutes on end, watched from outside.
//!
//! ```text
//! cargo bench --bench soak                                  # 10,000 servers, 10 minutes
//! cargo bench --bench soak -- --servers 2000 --minutes 3    # a smaller variant
//! cargo bench --bench soak -- --set predictor.max_batch=64  # a setting changed
//! ```
//!
//! The bench starts a private nats-server and every stage as its own process, as a
//! deployment runs them (`fleetcast run generator`, `window-keeper`, `predictor`,
//! `risk-scorer`, `alert-router`, `gateway`), so each stage's memory and CPU can be told
//! apart. The generator starts alone and backfills `--backfill-hours` of history; once it is
//! live (one step every `--step-ms`), the other stages start, as after a restart: the window
//! keeper rebuilds its windows from the stream, the durable consumers begin at the next
//! message. After a warm-up (until forecasts flow and the window keeper and the risk scorer
//! are less than one step behind, at most `--warmup-max-s`) it measures for `--minutes`, sampling every
//! `--interval-s`: every stage's counters (`$SRV.STATS`, as `fleetcast status` reads them),
//! every JetStream consumer's pending count, every stream's size, each process's RSS
//! (`VmRSS` of `/proc/<pid>/status`) and CPU, the load average, and the dead letters seen on
//! `rejected.>`. Then it stops the generator, waits until every consumer has caught up (at
//! most `--settle-max-s`), and checks that nothing was lost by the counters: samples
//! generated = taken by the window keeper, jobs queued = taken by the predictor + replaced
//! in the work queue by a newer job of the same server, forecasts and risk scores all
//! consumed, no rejection, dead letter, publish error or skipped message.
//!
//! Output: a progress line on stderr, the CSV curve (one row per sample, `--csv`, default
//! `target/soak/soak-<servers>.csv`), the processes' logs under `--logs`, and a summary on
//! stdout (see `report`).

mod procs;
mod report;

use clap::Parser;
use fleetcast::bus::{Bus, NatsServer, find_server_binary};
use fleetcast::settings::Settings;
use fleetcast::status::gather;
use fleetcast::subjects::StreamKind;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use procs::{Cpu, Processes};
use report::{Phase, Sample};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the soak runs, with the issue's numbers as defaults.
#[derive(Debug, Clone, Parser)]
#[command(about = "fleetcast soak: a fleet at speed for minutes, lag, RSS and loss watched")]
pub struct Args {
    /// Fleet size.
    #[arg(long, default_value_t = 10_000)]
    pub servers: u32,
    /// Minutes measured after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Wall-clock milliseconds per simulated 5-minute step (5000 = 60x).
    #[arg(long, default_value_t = 5000)]
    pub step_ms: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    pub interval_s: f64,
    /// Hours of history the generator publishes before going live (25: full windows).
    #[arg(long, default_value_t = 25)]
    pub backfill_hours: u32,
    /// Longest warm-up after the stages start, seconds.
    #[arg(long, default_value_t = 300)]
    pub warmup_max_s: u64,
    /// Longest wait for the consumers to catch up once the generator stopped, seconds.
    #[arg(long, default_value_t = 180)]
    pub settle_max_s: u64,
    /// Where the CSV curve goes (default target/soak/soak-<servers>.csv).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Folder for the processes' logs.
    #[arg(long, default_value = "target/soak")]
    pub logs: PathBuf,
    /// A setting for every stage, KEY=VALUE (`predictor.max_batch=64`), as
    /// FLEETCAST_<SECTION>__<KEY> in their environment. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Leave the gateway out.
    #[arg(long)]
    pub no_gateway: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(soak(&args))?;
    print!("{summary}");
    Ok(())
}

/// The stage names as `$SRV.STATS` reports them, and the subcommand of `fleetcast run`.
const CONSUMER_STAGES: [(&str, &str); 5] = [
    ("window_keeper", "window-keeper"),
    ("predictor", "predictor"),
    ("risk_scorer", "risk-scorer"),
    ("alert_router", "alert-router"),
    ("gateway", "gateway"),
];

async fn soak(args: &Args) -> anyhow::Result<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let logs = root.join(&args.logs);
    std::fs::create_dir_all(&logs)?;
    let csv_path = args.csv.clone().map_or_else(
        || logs.join(format!("soak-{}.csv", args.servers)),
        |path| root.join(path),
    );
    let binary = find_server_binary("")?;
    let data = tempfile::tempdir()?;
    let server = NatsServer::start(&binary, 0, data.path())?;
    let mut settings = Settings::default();
    settings.nats.url = server.url().to_string();
    settings.nats.embedded = false;
    let bus = Bus::connect(&settings.nats).await?;
    bus.ensure_streams().await?;
    let dead_letters = count_dead_letters(&bus).await?;

    let mut env = vec![
        ("FLEETCAST_NATS__URL".to_string(), server.url().to_string()),
        ("FLEETCAST_NATS__EMBEDDED".into(), "false".into()),
        (
            "FLEETCAST_GENERATOR__SERVERS".into(),
            args.servers.to_string(),
        ),
        (
            "FLEETCAST_GENERATOR__STEP_INTERVAL_MS".into(),
            args.step_ms.to_string(),
        ),
        (
            "FLEETCAST_GENERATOR__BACKFILL_HOURS".into(),
            args.backfill_hours.to_string(),
        ),
        ("FLEETCAST_GATEWAY__BIND".into(), "127.0.0.1:0".into()),
    ];
    for setting in &args.settings {
        env.push(procs::setting_env(setting)?);
    }
    let mut processes = Processes::new(
        PathBuf::from(env!("CARGO_BIN_EXE_fleetcast")),
        root.clone(),
        logs.clone(),
        env,
    );
    processes.add_pid("nats-server", server.pid());
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut cpu = Cpu::default();

    // 1. The generator alone, until its backfill is stored.
    processes.spawn("generator", "generator")?;
    let step_seconds = u64::from(settings.time.step_seconds);
    let backfill_steps = u64::from(args.backfill_hours) * 3600 / step_seconds;
    let bar = progress(backfill_steps, "backfill steps");
    loop {
        processes.check_alive()?;
        let status = gather(&bus, Duration::from_millis(500)).await.ok();
        let step = status
            .as_ref()
            .and_then(|status| status.stages.iter().find(|s| s.report.stage == "generator"))
            .and_then(|stage| stage.report.facts.get("step")?.parse::<u64>().ok())
            .unwrap_or(0);
        bar.set_position(step.min(backfill_steps));
        if step >= backfill_steps {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bar.finish_and_clear();
    let backfill_s = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {} servers, backfill of {backfill_steps} steps stored in {backfill_s:.0} s",
        args.servers
    );

    // 2. Every other stage, as after a restart; warm-up until the window keeper and the risk
    // scorer are less than a step behind and forecasts flow (the predictor's queue is bounded
    // at two jobs per server, and stays full when it cannot keep up).
    for (stage, command) in CONSUMER_STAGES {
        if stage == "gateway" && args.no_gateway {
            continue;
        }
        processes.spawn(stage, command)?;
    }
    let expected = if args.no_gateway { 5 } else { 6 };
    let interval = Duration::from_secs_f64(args.interval_s);
    let warm_started = Instant::now();
    let bar = progress(args.warmup_max_s, "warm-up s");
    loop {
        let sample = take_sample(&bus, &mut processes, &mut cpu, &dead_letters, started).await?;
        let answered = sample.value("stages_answered") as usize;
        let caught_up = answered >= expected
            && sample.value("lag.window_keeper") < f64::from(args.servers)
            && sample.value("lag.risk_scorer") < f64::from(args.servers)
            && sample.value("predictor.published") > 0.0;
        bar.set_position(warm_started.elapsed().as_secs());
        show(&bar, &sample);
        samples.push(sample.in_phase(Phase::Warmup));
        if caught_up || warm_started.elapsed().as_secs() >= args.warmup_max_s {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    bar.finish_and_clear();
    let warmup_s = warm_started.elapsed().as_secs_f64();
    eprintln!(
        "soak: warm-up {warmup_s:.0} s; measuring {} minutes",
        args.minutes
    );

    // 3. The soak.
    let soak_s = args.minutes * 60.0;
    let soak_started = Instant::now();
    let bar = progress(soak_s as u64, "s");
    let mut next = tokio::time::Instant::now();
    loop {
        let sample = take_sample(&bus, &mut processes, &mut cpu, &dead_letters, started).await?;
        bar.set_position(soak_started.elapsed().as_secs());
        show(&bar, &sample);
        samples.push(sample.in_phase(Phase::Soak));
        report::write_csv(&csv_path, &samples)?;
        if soak_started.elapsed().as_secs_f64() >= soak_s {
            break;
        }
        next += interval;
        tokio::time::sleep_until(next).await;
    }
    bar.finish_and_clear();

    // 4. Stop the generator (it finishes the step in hand), let every consumer catch up.
    processes.stop("generator")?;
    let settle_started = Instant::now();
    let bar = progress(args.settle_max_s, "settle s");
    let settled = loop {
        let sample = take_sample(&bus, &mut processes, &mut cpu, &dead_letters, started).await?;
        let idle = sample.has("lag.total")
            && sample.value("lag.total") == 0.0
            && sample.value("ack_pending.total") == 0.0;
        bar.set_position(settle_started.elapsed().as_secs());
        show(&bar, &sample);
        samples.push(sample.in_phase(Phase::Settle));
        if idle || settle_started.elapsed().as_secs() >= args.settle_max_s {
            break idle;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    bar.finish_and_clear();
    // The last counters, once the last acknowledgements and status reports are in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = take_sample(&bus, &mut processes, &mut cpu, &dead_letters, started).await?;
    samples.push(last.in_phase(Phase::Settle));
    report::write_csv(&csv_path, &samples)?;
    let exits = processes.stop_all();
    drop(server);

    let run = report::Run {
        args: args.clone(),
        backfill_s,
        warmup_s,
        settle_s: settle_started.elapsed().as_secs_f64(),
        settled,
        exits,
        csv: csv_path,
        logs,
    };
    Ok(report::summary(&run, &samples))
}

/// The sample's progress line: on the bar on a terminal, one line per sample otherwise.
fn show(bar: &ProgressBar, sample: &Sample) {
    let line = report::progress_line(sample);
    if std::io::stderr().is_terminal() {
        bar.set_message(line);
    } else {
        eprintln!("soak {:>5.0} s  {line}", sample.t_s());
    }
}

fn progress(length: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(length.max(1));
    let template = format!("soak {{elapsed_precise}} [{{bar:24}}] {{pos}}/{{len}} {unit} {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

/// Counts every message on `rejected.>` (the dead letters) from now on.
async fn count_dead_letters(bus: &Bus) -> anyhow::Result<Arc<AtomicU64>> {
    let count = Arc::new(AtomicU64::new(0));
    let mut rejected = bus
        .client()
        .subscribe(bus.subjects().rejected_all())
        .await?;
    let counted = count.clone();
    tokio::spawn(async move {
        while rejected.next().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(count)
}

/// The counters kept from each stage's report (summed over its instances).
const COUNTERS: [&str; 21] = [
    "received",
    "accepted",
    "rejected",
    "published",
    "publish_errors",
    "outbox_full",
    "consumer_lag",
    "replayed",
    "steps",
    "steps_closed",
    "jobs_published",
    "errors",
    "batches",
    "duplicates",
    "skipped",
    "superseded",
    "stale_forecasts",
    "redelivered",
    "events",
    "consumer_errors",
    "bus_messages",
];

/// One look at everything: stages, consumers, streams, processes, load.
async fn take_sample(
    bus: &Bus,
    processes: &mut Processes,
    cpu: &mut Cpu,
    dead_letters: &AtomicU64,
    started: Instant,
) -> anyhow::Result<Sample> {
    processes.check_alive()?;
    let mut values = BTreeMap::new();
    let status = gather(bus, Duration::from_secs(2)).await?;
    let subjects = bus.subjects();
    let stages: std::collections::BTreeSet<&str> = status
        .stages
        .iter()
        .map(|s| s.report.stage.as_str())
        .collect();
    values.insert("stages_answered".into(), stages.len() as f64);
    for stage in &status.stages {
        let report = &stage.report;
        for counter in COUNTERS {
            if let Some(value) = report.counters.get(counter) {
                *values
                    .entry(format!("{}.{counter}", report.stage))
                    .or_default() += *value as f64;
            }
        }
        if let Some(step) = report.facts.get("step").and_then(|s| s.parse::<f64>().ok()) {
            values.insert(format!("{}.step", report.stage), step);
        }
    }
    let durables = [
        ("predictor".to_string(), "predictor"),
        (
            subjects.durable_consumer("risk_scorer", StreamKind::Metrics),
            "risk_scorer",
        ),
        (
            subjects.durable_consumer("risk_scorer", StreamKind::Forecasts),
            "risk_scorer",
        ),
        (
            subjects.durable_consumer("alert_router", StreamKind::Risk),
            "alert_router",
        ),
        (
            subjects.durable_consumer("alert_router", StreamKind::Forecasts),
            "alert_router",
        ),
    ];
    let short = |stream: &str| {
        stream
            .strip_prefix(&subjects.stream_prefix())
            .unwrap_or(stream)
            .to_ascii_lowercase()
    };
    for consumer in &status.consumers {
        let owner = durables.iter().find(|(name, _)| *name == consumer.name);
        let name = owner.map_or("ordered", |(name, _)| name.as_str());
        let stream = short(&consumer.stream);
        *values
            .entry(format!("pending.{stream}.{name}"))
            .or_default() += consumer.pending as f64;
        *values
            .entry(format!("ack_pending.{stream}.{name}"))
            .or_default() += consumer.ack_pending as f64;
        if let Some((_, stage)) = owner {
            *values.entry(format!("lag.{stage}")).or_default() +=
                (consumer.pending + consumer.ack_pending as u64) as f64;
            *values.entry("ack_pending.total".into()).or_default() += consumer.ack_pending as f64;
        }
    }
    // The keeper's and gateway's lag is what they report: none (not 0) when they did not
    // answer in time, so the curve has a gap there instead of a false zero.
    for stage in ["window_keeper", "gateway"] {
        if let Some(lag) = values.get(&format!("{stage}.consumer_lag")).copied() {
            values.insert(format!("lag.{stage}"), lag);
        }
    }
    let lags = [
        "window_keeper",
        "predictor",
        "risk_scorer",
        "alert_router",
        "gateway",
    ]
    .map(|stage| values.get(&format!("lag.{stage}")).copied());
    if lags.iter().all(Option::is_some) {
        values.insert("lag.total".into(), lags.iter().flatten().sum());
    }
    values.entry("ack_pending.total".into()).or_insert(0.0);
    for stream in &status.streams {
        let name = short(&stream.name);
        values.insert(format!("stream.{name}.messages"), stream.messages as f64);
        values.insert(format!("stream.{name}.mb"), stream.bytes as f64 / 1e6);
    }
    for (name, rss_mb, cpu_pct) in cpu.measure(processes) {
        values.insert(format!("rss_mb.{name}"), rss_mb);
        if let Some(pct) = cpu_pct {
            values.insert(format!("cpu_pct.{name}"), pct);
        }
    }
    values.insert("load1".into(), procs::load_average());
    values.insert(
        "dead_letters".into(),
        dead_letters.load(Ordering::Relaxed) as f64,
    );
    Ok(Sample::new(started.elapsed().as_secs_f64(), values))
}
