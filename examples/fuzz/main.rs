//! Fuzzes every decoder of fleetcast with structured and random inputs, on stable Rust:
//! `cargo run --release --example fuzz -- --inputs 10000000 [--seed S]`.
//!
//! Each decoder runs the code an actor runs on an input taken off the bus or an HTTP body:
//! decoding and every check, and, where the input was accepted, the step that consumes it
//! (the window keeper's `Fleet`, the risk scorer's assessment, the alert router's book). The
//! inputs are a mix of
//! - **structured** ones: a valid message (the golden files of `tests/fixtures/wire/`, the real
//!   node_exporter pages and remote-write bodies of `tests/fixtures/`) with its fields mutated
//!   through `arbitrary` (NaN, ±inf, -0, extreme integers, empty and huge strings and arrays,
//!   wrong schema versions, swapped fields), encoded again;
//! - **byte-level** mutations of those encodings (bit flips, truncation, inserted, deleted and
//!   duplicated runs, interesting bytes);
//! - **random** bytes.
//!
//! Per decoder it prints the inputs, how many were accepted, the rejections by reason and
//! the panics (caught with `catch_unwind`; the first panicking input of each decoder is
//! written to `target/fuzz-panics/` for a regression test). The exit code is 1 when any
//! decoder panicked.

use arbitrary::Unstructured;
use fleetcast::actors::alert_router::book::{AlertBook, BookConfig};
use fleetcast::actors::gateway::feed;
use fleetcast::actors::node_exporter::page;
use fleetcast::actors::predictor::job::{JobShape, decode_job};
use fleetcast::actors::remote_write::proto;
use fleetcast::actors::risk_scorer::scoring::{RiskConfig, assess};
use fleetcast::actors::window_keeper::fleet::{Fleet, Verdict};
use fleetcast::checks;
use fleetcast::node_series::NodeConfig;
use fleetcast::samples::{IngestRules, WindowShape};
use fleetcast::settings::AlertSettings;
use fleetcast::subjects::Subjects;
use fleetcast::wire::{self, Forecast, MetricSample, PredictJob, RiskScore};
use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

mod mutate;
use mutate::*;

/// What one decoder made of one input: accepted, or the reason it was refused.
type Outcome = Result<(), String>;

/// One decoder under test: its name, its seeds (valid inputs) and a structured mutator.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Mutates a valid input structurally (field values), returning a new encoding.
    structured: fn(&[u8], &mut Unstructured) -> Vec<u8>,
    /// Runs the decoder; `state` is the decoder's own state carried between inputs.
    run: fn(&mut State, &[u8]) -> Outcome,
}

/// State carried between inputs, as an actor carries it between messages.
struct State {
    subjects: Subjects,
    fleet: Fleet,
    book: AlertBook,
    risk: RiskConfig,
    node: NodeConfig,
    now_ms: i64,
    /// The shape of the golden job (the predictor checks jobs against its model's).
    job_shape: JobShape,
}

#[derive(Default)]
struct Tally {
    /// CPU seconds the decoder's thread used.
    cpu_s: f64,
    inputs: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    panics: u64,
}

fn main() {
    let mut inputs: u64 = 10_000_000;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (arg.as_str(), value) {
            ("--inputs", Some(v)) => inputs = v,
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("usage: fuzz [--inputs N] [--seed S]");
                std::process::exit(2);
            }
        }
    }
    // Panics are counted, not printed (the first input of each is saved).
    std::panic::set_hook(Box::new(|_| {}));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = targets(root);
    let per_target = inputs.div_ceil(targets.len() as u64);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let tallies: Vec<(&str, Tally)> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                scope.spawn(move || (target.name, fuzz(target, per_target, seed + index as u64)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a fuzz thread"))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut total = Tally::default();
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>7} {:>7}  rejected by reason",
        "decoder", "inputs", "accepted", "rejected", "panics", "CPU-s"
    );
    for (name, tally) in &tallies {
        let rejected: u64 = tally.rejected.values().sum();
        let reasons: Vec<String> = tally
            .rejected
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        println!(
            "{name:<22} {:>10} {:>10} {:>10} {:>7} {:>7.1}  {}",
            tally.inputs,
            tally.accepted,
            rejected,
            tally.panics,
            tally.cpu_s,
            reasons.join(", ")
        );
        total.inputs += tally.inputs;
        total.accepted += tally.accepted;
        total.panics += tally.panics;
    }
    println!(
        "total: {} inputs, {} accepted, {} panics in {wall:.1} s wall, {:.1} CPU-s ({:.0} inputs per CPU-s)",
        total.inputs,
        total.accepted,
        total.panics,
        cpu_seconds() - cpu_started,
        total.inputs as f64 / (cpu_seconds() - cpu_started).max(1e-9)
    );
    if total.panics > 0 {
        std::process::exit(1);
    }
}

/// Runs `count` inputs through `target`.
fn fuzz(target: &Target, count: u64, seed: u64) -> Tally {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut state = State::new();
    let mut tally = Tally::default();
    let mut entropy = vec![0u8; 1024];
    let cpu_started = thread_cpu_seconds();
    for _ in 0..count {
        rng.fill_bytes(&mut entropy);
        let mut u = Unstructured::new(&entropy);
        let seed_input = &target.seeds[rng.random_range(0..target.seeds.len())];
        let input = match rng.random_range(0..10u8) {
            0 => seed_input.clone(),
            1..=4 => (target.structured)(seed_input, &mut u),
            5..=7 => mutate_bytes(seed_input, &mut rng),
            8 => {
                let structured = (target.structured)(seed_input, &mut u);
                mutate_bytes(&structured, &mut rng)
            }
            _ => {
                let len = rng.random_range(0..512usize);
                (0..len).map(|_| rng.random()).collect()
            }
        };
        tally.inputs += 1;
        match catch_unwind(AssertUnwindSafe(|| (target.run)(&mut state, &input))) {
            Ok(Ok(())) => tally.accepted += 1,
            Ok(Err(reason)) => *tally.rejected.entry(reason).or_default() += 1,
            Err(_) => {
                tally.panics += 1;
                // The state may be half-updated: start afresh, as a restarted actor would.
                state = State::new();
                if tally.panics == 1 {
                    save_panic(target.name, &input);
                }
            }
        }
        if state.fleet.len() > 10_000 {
            state.fleet = Fleet::new(state.fleet.rules());
        }
    }
    tally.cpu_s = thread_cpu_seconds() - cpu_started;
    tally
}

fn save_panic(name: &str, input: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-panics");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}.bin"));
    let _ = std::fs::write(&path, input);
    eprintln!("fuzz: {name} panicked; input saved to {}", path.display());
}

impl State {
    fn new() -> State {
        State {
            subjects: Subjects::default(),
            fleet: Fleet::new(IngestRules {
                shape: WindowShape {
                    context_steps: 288,
                    step_seconds: 300,
                },
                max_future_ms: 600_000,
                min_observed: 24,
            }),
            book: AlertBook::new(BookConfig::from_settings(&AlertSettings::default())),
            risk: RiskConfig::default(),
            node: NodeConfig::default(),
            now_ms: 1_767_571_200_000,
            job_shape: golden_job_shape(),
        }
    }
}

fn golden_job_shape() -> JobShape {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire/PredictJob.msgpack");
    let job: PredictJob =
        wire::decode(&std::fs::read(path).expect("the golden job")).expect("a job");
    JobShape {
        context_steps: job.steps,
        step_seconds: job.step_seconds,
    }
}

fn targets(root: &Path) -> Vec<Target> {
    let golden = |name: &str| {
        std::fs::read(root.join(format!("tests/fixtures/wire/{name}.msgpack")))
            .unwrap_or_else(|error| panic!("the golden {name}: {error}"))
    };
    let files = |dir: &str| -> Vec<Vec<u8>> {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|error| panic!("{dir}: {error}"))
            .map(|entry| entry.expect("a file").path())
            .filter(|path| path.extension().is_some_and(|e| e == "bin" || e == "prom"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read(p).expect("readable"))
            .collect()
    };
    let feed_seed = serde_json::to_vec(&serde_json::json!({"records": [
        {"server_name": "ppdb001", "timestamp": "2026-01-05T00:00:00Z", "cpu_user_pct": 12.5, "mem_used_pct": 40.0},
        {"server_name": "ppweb002", "timestamp": 1767571200, "profile": "web_api", "load_average": 1.5},
    ]}))
    .expect("json");
    vec![
        Target {
            name: "sample/window_keeper",
            seeds: vec![golden("MetricSample")],
            structured: mutate_sample,
            run: run_sample_keeper,
        },
        Target {
            name: "sample/risk_scorer",
            seeds: vec![golden("MetricSample")],
            structured: mutate_sample,
            run: run_sample_checks,
        },
        Target {
            name: "predict_job",
            seeds: vec![golden("PredictJob")],
            structured: mutate_job,
            run: run_job,
        },
        Target {
            name: "forecast",
            seeds: vec![golden("Forecast")],
            structured: mutate_forecast,
            run: run_forecast,
        },
        Target {
            name: "risk_score",
            seeds: vec![golden("RiskScore")],
            structured: mutate_risk,
            run: run_risk,
        },
        Target {
            name: "control/scenario",
            seeds: vec![golden("ScenarioRequest")],
            structured: mutate_scenario,
            run: run_scenario,
        },
        Target {
            name: "control/model_load",
            seeds: vec![golden("ModelLoadRequest")],
            structured: mutate_model_load,
            run: run_model_load,
        },
        Target {
            name: "remote_write",
            seeds: files("tests/fixtures/remote_write"),
            structured: mutate_remote_write,
            run: run_remote_write,
        },
        Target {
            name: "node_exporter_page",
            seeds: files("tests/fixtures/node_exporter"),
            structured: mutate_page,
            run: run_page,
        },
        Target {
            name: "gateway/feed_data",
            seeds: vec![feed_seed],
            structured: mutate_feed,
            run: run_feed,
        },
    ]
}

// ---- decoders -------------------------------------------------------------------------

fn run_sample_keeper(state: &mut State, input: &[u8]) -> Outcome {
    state.now_ms += 1_000;
    let server = wire::decode::<MetricSample>(input)
        .map(|sample| sample.server)
        .unwrap_or_else(|_| "ppdb001".into());
    match state.fleet.ingest(&server, input, state.now_ms) {
        Verdict::Accepted { job_ready, .. } => {
            if job_ready {
                state.fleet.job(&server);
            }
            Ok(())
        }
        Verdict::Rejected { kind, .. } => Err(kind.name().to_string()),
    }
}

fn run_sample_checks(state: &mut State, input: &[u8]) -> Outcome {
    let sample: MetricSample = wire::decode(input).map_err(|e| e.kind().name().to_string())?;
    let subject = state.subjects.metrics(&sample.server);
    checks::check_sample(&state.subjects, &subject, &sample)
        .map_err(|r| r.kind.name().to_string())?;
    Ok(())
}

fn run_job(state: &mut State, input: &[u8]) -> Outcome {
    let server = wire::decode::<PredictJob>(input)
        .map(|job| job.server)
        .unwrap_or_else(|_| "ppdb001".into());
    let subject = state.subjects.predict_job(&server);
    decode_job(&subject, &state.subjects, input, state.job_shape)
        .map_err(|r| r.kind.name().to_string())?;
    Ok(())
}

fn run_forecast(state: &mut State, input: &[u8]) -> Outcome {
    let forecast: Forecast = wire::decode(input).map_err(|e| e.kind().name().to_string())?;
    let subject = state.subjects.forecasts(&forecast.server);
    let profile = checks::check_forecast(&state.subjects, &subject, &forecast)
        .map_err(|r| r.kind.name().to_string())?;
    let current = BTreeMap::from([("mem_used_pct".to_string(), 50.0)]);
    let now_s = forecast.origin_s.saturating_add(300);
    assess(&state.risk, profile, &current, Some(&forecast), now_s);
    state
        .book
        .on_forecast(&forecast)
        .map_err(|_| "out_of_order".to_string())?;
    Ok(())
}

fn run_risk(state: &mut State, input: &[u8]) -> Outcome {
    let risk: RiskScore = wire::decode(input).map_err(|e| e.kind().name().to_string())?;
    let subject = state.subjects.risk(&risk.server);
    checks::check_risk(&state.subjects, &subject, &risk).map_err(|r| r.kind.name().to_string())?;
    state
        .book
        .on_risk(&risk)
        .map_err(|_| "out_of_order".to_string())?;
    Ok(())
}

fn run_scenario(_: &mut State, input: &[u8]) -> Outcome {
    let request: wire::ScenarioRequest =
        wire::decode(input).map_err(|e| e.kind().name().to_string())?;
    if request.scenario != "status" {
        request
            .scenario
            .parse::<fleetcast::sim::Scenario>()
            .map_err(|_| "unknown_scenario".to_string())?;
    }
    Ok(())
}

fn run_model_load(_: &mut State, input: &[u8]) -> Outcome {
    let request: wire::ModelLoadRequest =
        wire::decode(input).map_err(|e| e.kind().name().to_string())?;
    if request.path.is_empty() {
        return Err("empty_path".into());
    }
    Ok(())
}

fn run_remote_write(_: &mut State, input: &[u8]) -> Outcome {
    match proto::decode_body(input, 32 << 20) {
        Ok(_) => Ok(()),
        Err(proto::BodyError::Snappy(_)) => Err("snappy".into()),
        Err(proto::BodyError::TooLarge { .. }) => Err("too_large".into()),
        Err(proto::BodyError::Protobuf(_)) => Err("protobuf".into()),
    }
}

fn run_page(state: &mut State, input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let parsed = page::parse(&text, &state.node);
    if parsed.problems.is_empty() {
        Ok(())
    } else {
        Err("page_problems".into())
    }
}

fn run_feed(state: &mut State, input: &[u8]) -> Outcome {
    let records = feed::parse_batch(input).map_err(|_| "bad_body".to_string())?;
    let mut refused = 0;
    for record in &records {
        match feed::record_to_sample(record) {
            Ok(sample) => {
                let subject = state.subjects.metrics(&sample.server);
                if checks::check_sample(&state.subjects, &subject, &sample).is_err() {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    if refused > 0 {
        Err("records_refused".into())
    } else {
        Ok(())
    }
}

/// CPU seconds the calling thread has used.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime fills the struct it is given.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
