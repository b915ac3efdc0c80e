//! Export and simulation throughput (a plain `main`, not a timed test):
//!
//! `cargo bench --bench export` exports 90 servers × 30 days (777,600 rows) to a temporary
//! Parquet file and prints rows/s, then times one simulated step (compute + encode the
//! samples, as the live generator does) of a 100,000-server fleet. `EXPORT_DAYS` and
//! `EXPORT_SERVERS` change the export's size.

use fleetcast::catalog::Metric;
use fleetcast::export::{self, ExportArgs};
use fleetcast::sim::{Scenario, SimConfig, Simulation};
use fleetcast::wire::{self, MetricSample, SCHEMA_VERSION};
use std::time::Instant;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut args = ExportArgs::new(dir.path().join("bench.parquet"));
    args.servers = env_or("EXPORT_SERVERS", 90);
    args.hours = env_or("EXPORT_DAYS", 30) * 24;
    let summary = export::run(&args).expect("export");
    println!(
        "export: {} servers x {} h = {} rows in {:.2} s: {:.0} rows/s, {:.1} MB",
        args.servers,
        args.hours,
        summary.rows,
        summary.seconds,
        summary.rows_per_second(),
        summary.bytes as f64 / 1e6
    );

    let started = Instant::now();
    let mut config = SimConfig::new(100_000, 42);
    config.scenario = Scenario::Natural;
    let mut fleet = Simulation::new(&config).expect("fleet");
    println!(
        "fleet of 100000: built in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let names: Vec<String> = fleet.servers().iter().map(|s| s.name.clone()).collect();
    for round in 0..5 {
        let started = Instant::now();
        let step = fleet.step();
        let computed = started.elapsed().as_secs_f64();
        let mut bytes = 0;
        for (name, row) in names.iter().zip(step.rows) {
            let Some(values) = row.values else { continue };
            let sample = MetricSample {
                v: SCHEMA_VERSION,
                server: name.clone(),
                ts_ms: step.ts_ms,
                profile: None,
                metrics: Metric::ALL
                    .iter()
                    .zip(values)
                    .map(|(metric, value)| (metric.name().to_string(), value))
                    .collect(),
            };
            bytes += wire::encode(&sample).len();
        }
        println!(
            "step {round} of 100000 servers: compute {:.1} ms, compute + encode {:.1} ms ({:.1} MB)",
            computed * 1e3,
            started.elapsed().as_secs_f64() * 1e3,
            bytes as f64 / 1e6
        );
    }
}
