//! Predictor throughput: forecasts per second of the shipped model on ONNX Runtime against
//! batch size and intra-op threads, the achieved GFLOP/s (from `flops_per_forecast` in
//! model.json), and the peak resident memory of each configuration; then a 1,000-server fleet
//! forecast in chunks of `max_batch`, as the worker does it.
//!
//! ```text
//! cargo bench --bench predictor                       # the whole table
//! FLEETCAST_BENCH_SECONDS=1 cargo bench --bench predictor
//! FLEETCAST_BENCH_MODEL=models/other cargo bench --bench predictor
//! ```
//!
//! Peak memory is the process's `VmHWM`, reset before each configuration through
//! `/proc/self/clear_refs` (Linux), so each row shows the peak of that configuration alone.

use fleetcast::actors::predictor::model::{ModelBatch, ModelOptions, OnnxModel};
use fleetcast::catalog::Profile;
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
    past_values: Vec<f32>,
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model_dir = std::env::var("FLEETCAST_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("models/tft-v1"));
    let seconds: f64 = std::env::var("FLEETCAST_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3.0);
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/model_golden.json"))
            .expect("tests/fixtures/model_golden.json"),
    )
    .expect("golden fixture parses");
    let settings = Settings::default();
    let base = ModelOptions::from_settings(&settings).unwrap_or_else(|error| panic!("{error}"));
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "model {} | {} CPUs available | {seconds} s per configuration",
        model_dir.display(),
        cpus
    );
    println!("load average before: {}", load_average());
    println!(
        "{:>7} {:>7} {:>12} {:>10} {:>10} {:>11} {:>13} {:>9}",
        "threads",
        "batch",
        "forecasts/s",
        "ms/batch",
        "GFLOP/s",
        "peak RSS MB",
        "per CPU-s",
        "CPU use"
    );
    for threads in THREADS {
        let options = ModelOptions {
            intra_threads: threads,
            ..base.clone()
        };
        reset_peak_memory();
        let mut model = OnnxModel::load(&model_dir, &options).unwrap_or_else(|e| panic!("{e}"));
        let flops = model.metadata().flops_per_forecast;
        for batch_size in BATCH_SIZES {
            reset_peak_memory();
            let batch = make_batch(&golden, batch_size, 0);
            for _ in 0..2 {
                model.run(&batch).expect("warm-up run");
            }
            let started = Instant::now();
            let cpu_before = cpu_seconds();
            let mut runs = 0_u64;
            while started.elapsed() < Duration::from_secs_f64(seconds) || runs < 3 {
                model.run(&batch).expect("run");
                runs += 1;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_before;
            let forecasts = (runs as usize * batch_size) as f64;
            let per_second = forecasts / elapsed;
            println!(
                "{threads:>7} {batch_size:>7} {per_second:>12.0} {:>10.2} {:>10.1} {:>11.0} {:>13.0} {:>9.2}",
                elapsed * 1000.0 / runs as f64,
                per_second * flops / 1e9,
                peak_memory_mb(),
                forecasts / cpu,
                cpu / elapsed
            );
        }
    }
    println!("load average after: {}", load_average());
    println!();
    println!("fleet of {FLEET} servers in chunks (as the worker runs them), 2 threads:");
    println!(
        "{:>7} {:>12} {:>10} {:>11}",
        "chunk", "forecasts/s", "GFLOP/s", "peak RSS MB"
    );
    let options = ModelOptions {
        intra_threads: 2,
        ..base
    };
    for chunk in [32, 50, 64] {
        reset_peak_memory();
        let mut model = OnnxModel::load(&model_dir, &options).unwrap_or_else(|e| panic!("{e}"));
        let flops = model.metadata().flops_per_forecast;
        let batches: Vec<ModelBatch> = (0..FLEET)
            .step_by(chunk)
            .map(|start| make_batch(&golden, chunk.min(FLEET - start), start))
            .collect();
        model.run(&batches[0]).expect("warm-up run");
        let started = Instant::now();
        for batch in &batches {
            model.run(batch).expect("run");
        }
        let per_second = FLEET as f64 / started.elapsed().as_secs_f64();
        println!(
            "{chunk:>7} {per_second:>12.0} {:>10.1} {:>11.0}",
            per_second * flops / 1e9,
            peak_memory_mb()
        );
    }
}

/// `size` windows cycling through the golden cases, each shifted so no two are equal.
fn make_batch(golden: &Golden, size: usize, offset: usize) -> ModelBatch {
    let mut batch = ModelBatch::default();
    for index in offset..offset + size {
        let case = &golden.cases[index % golden.cases.len()];
        let scale = 1.0 + (index % 17) as f32 * 0.01;
        let values: Vec<f32> = case.past_values.iter().map(|v| v * scale).collect();
        batch.push(
            &values,
            case.last_timestamp + 300 * (index as i64 % 288),
            Profile::ALL[case.profile],
        );
    }
    batch
}

/// CPU time used by every thread of the process so far, in seconds (from each thread's
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
