//! Predictor throughput: forecasts (servers) per second of the shipped model on ONNX Runtime
//! against batch size (servers per run) and intra-op threads, the achieved GFLOP/s (from
//! `flops_per_row` in model.json: one row is one metric of one server), and the peak resident
//! memory of each configuration; then a 1,000-server fleet forecast in chunks of `max_batch`
//! through the predictor's own code path (`forecast_histories`: rows built, run, forecasts
//! assembled), with 14, 10 (what node_exporter provides) and 2 metrics per server.
//!
//! ```text
//! cargo bench --bench predictor                       # the whole table
//! FLEETCAST_BENCH_SECONDS=1 cargo bench --bench predictor
//! FLEETCAST_BENCH_MODEL=models/other cargo bench --bench predictor
//! FLEETCAST_BENCH_METRICS=10 cargo bench --bench predictor   # metrics per server (default 14)
//! ```
//!
//! Peak memory is the process's `VmHWM`, reset before each configuration through
//! `/proc/self/clear_refs` (Linux), so each row shows the peak of that configuration alone.

use fleetcast::catalog::{Metric, Profile};
use fleetcast::model::{History, ModelBatch, ModelOptions, OnnxModel, forecast_histories};
use fleetcast::settings::Settings;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 5] = [1, 8, 32, 64, 128];
const THREADS: [usize; 2] = [1, 2];
const FLEET: usize = 1000;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    profile: usize,
    last_timestamp: i64,
    /// `null` where a step was not observed.
    past_values: Vec<Option<f32>>,
}

impl Case {
    /// The series scaled by `scale`, NaN where not observed.
    fn values(&self, scale: f32) -> Vec<f32> {
        self.past_values
            .iter()
            .map(|value| value.map_or(f32::NAN, |value| value * scale))
            .collect()
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model_dir = std::env::var("FLEETCAST_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("models/tft-v3"));
    let metrics: usize = std::env::var("FLEETCAST_BENCH_METRICS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(14)
        .clamp(1, 14);
    let seconds: f64 = std::env::var("FLEETCAST_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3.0);
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/model_golden.json"))
            .expect("tests/fixtures/model_golden.json"),
    )
    .expect("golden fixture parses");
    let base =
        ModelOptions::from_settings(&Settings::default()).unwrap_or_else(|error| panic!("{error}"));
    let load = |threads: usize, spinning: bool| {
        let options = ModelOptions {
            intra_threads: threads,
            intra_spinning: spinning,
            ..base.clone()
        };
        OnnxModel::load(&model_dir, &options).unwrap_or_else(|error| panic!("{error}"))
    };
    let flops = load(1, false).metadata().flops_per_row * metrics as f64;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "model {} ({:.1} MFLOP per forecast of {metrics} metrics) | {cpus} CPUs | {seconds} s per row | load average {}",
        model_dir.display(),
        flops / 1e6,
        load_average()
    );
    println!(
        "columns: forecasts/s and GFLOP/s by the wall clock; per CPU-s = forecasts per second of \
         CPU time used (the speed per core, whatever else runs on the machine)"
    );
    println!();
    println!("one session, intra-op threads x batch size (spinning off, the worker's default):");
    header("threads");
    for threads in THREADS {
        let mut model = load(threads, false);
        for batch_size in BATCH_SIZES {
            let batch = make_batch(&golden, batch_size, 0, metrics);
            let row = measure(
                seconds,
                flops,
                metrics,
                std::slice::from_mut(&mut model),
                &batch,
            );
            row.print(&threads.to_string(), batch_size);
        }
    }
    println!();
    println!("2 intra-op threads, spinning on (ONNX Runtime's default) vs off:");
    header("spinning");
    for spinning in [true, false] {
        let mut model = load(2, spinning);
        for batch_size in [32, 64] {
            let batch = make_batch(&golden, batch_size, 0, metrics);
            let row = measure(
                seconds,
                flops,
                metrics,
                std::slice::from_mut(&mut model),
                &batch,
            );
            row.print(if spinning { "on" } else { "off" }, batch_size);
        }
    }
    println!();
    println!("sessions side by side, 1 thread each (= predictor workers with intra_threads 1):");
    header("sessions");
    for sessions in [2, 3] {
        let mut models: Vec<OnnxModel> = (0..sessions).map(|_| load(1, false)).collect();
        for batch_size in [32, 64] {
            let batch = make_batch(&golden, batch_size, 0, metrics);
            let row = measure(seconds, flops, metrics, &mut models, &batch);
            row.print(&sessions.to_string(), batch_size);
        }
    }
    println!();
    println!(
        "a {FLEET}-server fleet in chunks of 32 servers, through the predictor's code path \
         (1 thread, spinning off):"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>12}",
        "metrics", "forecasts/s", "GFLOP/s", "peak RSS MB"
    );
    for per_server in [14, 10, 2] {
        reset_peak_memory();
        let mut model = load(1, false);
        let histories = make_histories(&golden, FLEET, per_server);
        forecast_histories(&mut model, &histories[..32], 0).expect("warm-up run");
        let started = Instant::now();
        for chunk in histories.chunks(32) {
            let forecasts = forecast_histories(&mut model, chunk, 0).expect("run");
            assert!(forecasts.iter().all(Result::is_ok), "every server forecast");
        }
        let per_second = FLEET as f64 / started.elapsed().as_secs_f64();
        let row_flops = flops / metrics as f64 * per_server as f64;
        println!(
            "{per_server:>8} {per_second:>12.0} {:>10.1} {:>12.0}",
            per_second * row_flops / 1e9,
            peak_memory_mb()
        );
    }
    println!();
    println!("load average after: {}", load_average());
}

fn header(first: &str) {
    println!(
        "{first:>8} {:>6} {:>12} {:>9} {:>10} {:>10} {:>12}",
        "batch", "forecasts/s", "ms/run", "per CPU-s", "GFLOP/s", "peak RSS MB"
    );
}

/// One configuration's numbers.
struct Row {
    per_second: f64,
    ms_per_run: f64,
    per_cpu_second: f64,
    gflops: f64,
    peak_mb: f64,
}

impl Row {
    fn print(&self, first: &str, batch_size: usize) {
        println!(
            "{first:>8} {batch_size:>6} {:>12.0} {:>9.2} {:>10.0} {:>10.1} {:>12.0}",
            self.per_second, self.ms_per_run, self.per_cpu_second, self.gflops, self.peak_mb
        );
    }
}

/// Runs `batch` (`metrics` rows per forecast) repeatedly on every model at once (one thread per
/// model) for `seconds`.
fn measure(
    seconds: f64,
    flops: f64,
    metrics: usize,
    models: &mut [OnnxModel],
    batch: &ModelBatch,
) -> Row {
    for model in models.iter_mut() {
        model.run(batch).expect("warm-up run");
    }
    reset_peak_memory();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    // Each runner thread reports its own CPU time: it has exited by the time the process's
    // live threads are summed again.
    let (runs, runner_cpu): (u64, f64) = std::thread::scope(|scope| {
        let handles: Vec<_> = models
            .iter_mut()
            .map(|model| {
                scope.spawn(move || {
                    let cpu_start = thread_cpu_seconds();
                    let mut runs = 0_u64;
                    while started.elapsed() < Duration::from_secs_f64(seconds) || runs < 3 {
                        model.run(batch).expect("run");
                        runs += 1;
                    }
                    (runs, thread_cpu_seconds() - cpu_start)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .fold((0, 0.0), |(runs, cpu), (r, c)| (runs + r, cpu + c))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before + runner_cpu;
    let forecasts = (runs as usize * batch.len() / metrics) as f64;
    let per_second = forecasts / elapsed;
    Row {
        per_second,
        ms_per_run: elapsed * 1000.0 * models.len() as f64 / runs as f64,
        per_cpu_second: forecasts / cpu,
        gflops: per_second * flops / 1e9,
        peak_mb: peak_memory_mb(),
    }
}

/// `size` servers of `metrics` rows each, cycling through the golden cases, each shifted so
/// no two are equal.
fn make_batch(golden: &Golden, size: usize, offset: usize, metrics: usize) -> ModelBatch {
    let mut batch = ModelBatch::default();
    for history in make_histories(golden, size + offset, metrics)
        .iter()
        .skip(offset)
    {
        for (metric, values) in &history.series {
            batch.push(values, *metric, history.profile, history.last_step_s);
        }
    }
    batch
}

/// `count` servers with the first `metrics` catalog metrics each, their histories cycled from
/// the golden cases.
fn make_histories(golden: &Golden, count: usize, metrics: usize) -> Vec<History> {
    (0..count)
        .map(|index| {
            let case = &golden.cases[index % golden.cases.len()];
            History {
                server: format!("srv{index:05}"),
                profile: Profile::ALL[case.profile],
                last_step_s: case.last_timestamp + 300 * (index as i64 % 288),
                series: Metric::ALL
                    .into_iter()
                    .take(metrics)
                    .enumerate()
                    .map(|(m, metric)| {
                        let source = &golden.cases[(index + m) % golden.cases.len()];
                        (metric, source.values(1.0 + (index % 17) as f32 * 0.01))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// CPU time used by the process's live threads so far, in seconds (from each thread's
/// `schedstat`: time spent running, in nanoseconds). Forecasts per CPU-second show the
/// speed per core even when other processes share the machine.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// CPU time of the calling thread so far, in seconds.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// The 1-minute load average (other work on the machine skews wall-clock rates).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Resets the process's peak resident set (`VmHWM`) to the current one.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set since the last reset, in MB.
fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
