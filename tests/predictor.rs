//! The predictor workers: the shipped model on real ONNX Runtime against its golden fixtures,
//! refusal of mismatched and corrupt models, hot reload, dead letters, and work sharing
//! between workers (one killed mid-stream) on a real nats-server.

use crate::util::{TestNats, collect};
use fleetcast::actors::predictor::{self, GetCounters, request_model_load};
use fleetcast::bus::Bus;
use fleetcast::catalog::{Metric, Profile};
use fleetcast::model::{ModelBatch, ModelOptions, OnnxModel, error_chain};
use fleetcast::settings::Settings;
use fleetcast::subjects::StreamKind;
use fleetcast::wire::{self, Forecast, PREDICT_JOB_VERSION, PredictJob, RejectKind, Rejection};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The model the repository ships.
fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tft-v3")
}

/// The shipped model's name, from its model.json.
fn shipped_name() -> String {
    let text = std::fs::read_to_string(shipped_model().join("model.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["name"].as_str().unwrap().to_string()
}

#[derive(Debug, Deserialize)]
struct Golden {
    tolerance: f32,
    cases: Vec<RawCase>,
}

/// A golden case as the training pipeline writes it: `null` for a step not observed,
/// quantiles nested `[step][quantile]` or flat.
#[derive(Debug, Deserialize)]
struct RawCase {
    metric: usize,
    profile: usize,
    last_timestamp: i64,
    past_values: Vec<Option<f32>>,
    quantiles: serde_json::Value,
    variable_weights: Vec<f32>,
    attention: Vec<f32>,
}

/// One metric of one server, what the model made of it.
#[derive(Debug)]
struct GoldenCase {
    metric: Metric,
    profile: Profile,
    last_timestamp: i64,
    /// NaN where not observed.
    past_values: Vec<f32>,
    /// `[step][quantile]`, flat.
    quantiles: Vec<f32>,
    variable_weights: Vec<f32>,
    attention: Vec<f32>,
}

fn flatten(value: &serde_json::Value, out: &mut Vec<f32>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other.as_f64().expect("a number") as f32),
    }
}

fn golden() -> (f32, Vec<GoldenCase>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_golden.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let golden: Golden = serde_json::from_str(&text).expect("golden fixture parses");
    let cases = golden
        .cases
        .into_iter()
        .map(|raw| {
            let mut quantiles = Vec::new();
            flatten(&raw.quantiles, &mut quantiles);
            GoldenCase {
                metric: Metric::ALL[raw.metric],
                profile: Profile::ALL[raw.profile],
                last_timestamp: raw.last_timestamp,
                past_values: raw
                    .past_values
                    .iter()
                    .map(|value| value.unwrap_or(f32::NAN))
                    .collect(),
                quantiles,
                variable_weights: raw.variable_weights,
                attention: raw.attention,
            }
        })
        .collect();
    (golden.tolerance, cases)
}

/// Index of the case with the fewest observed steps (a short or holed history).
fn sparsest(cases: &[GoldenCase]) -> usize {
    let observed = |case: &GoldenCase| case.past_values.iter().filter(|v| v.is_finite()).count();
    (0..cases.len())
        .min_by_key(|&index| observed(&cases[index]))
        .unwrap()
}

/// Largest difference between two outputs, scaled for values above 1 (float32 keeps about
/// seven digits, so a 1e-4 tolerance is absolute below 1 and relative above).
fn worst_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output lengths differ");
    got.iter()
        .zip(want)
        .map(|(got, want)| (got - want).abs() / want.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Settings for a predictor against `nats`, small and quick.
fn predictor_settings(nats: &TestNats, worker: &str) -> Settings {
    let mut settings = nats.settings.clone();
    settings.predictor.model_dir = shipped_model();
    settings.predictor.intra_threads = 1;
    settings.predictor.max_batch = 32;
    settings.predictor.max_wait_ms = 20;
    settings.predictor.worker_id = worker.into();
    settings.predictor.ack_wait_seconds = 5;
    settings
}

/// A job of one metric: the golden case's.
fn job_from(case: &GoldenCase, server: &str) -> PredictJob {
    PredictJob {
        v: PREDICT_JOB_VERSION,
        server: server.into(),
        profile: case.profile.name().into(),
        last_step_s: case.last_timestamp,
        step_seconds: 300,
        steps: 288,
        metrics: vec![case.metric.name().into()],
        values: case.past_values.clone(),
        gap_steps: 0,
    }
}

/// Publishes jobs through JetStream and waits until the stream has stored them all.
async fn publish_jobs(bus: &Bus, jobs: &[PredictJob]) {
    let jetstream = bus.jetstream();
    let mut acks = Vec::new();
    for job in jobs {
        let ack = jetstream
            .publish_with_headers(
                bus.subjects().predict_job(&job.server),
                fleetcast::bus::headers(),
                wire::encode(job).into(),
            )
            .await
            .expect("job published");
        acks.push(ack);
    }
    for ack in acks {
        ack.await.expect("job stored");
    }
}

/// Counts forecasts per (server, origin) into `seen` until `expected` jobs have one or
/// `timeout` passes, then for `linger` more to catch late duplicates.
async fn forecasts_per_job(
    subscriber: &mut async_nats::Subscriber,
    seen: &mut HashMap<(String, i64), usize>,
    expected: usize,
    timeout: Duration,
    linger: Duration,
) {
    let deadline = Instant::now() + timeout;
    while seen.len() < expected && Instant::now() < deadline {
        for message in collect(subscriber, 1, Duration::from_millis(500)).await {
            let forecast: Forecast = wire::decode(&message.payload).expect("forecast decodes");
            *seen
                .entry((forecast.server, forecast.origin_s))
                .or_default() += 1;
        }
    }
    for message in collect(subscriber, usize::MAX, linger).await {
        let forecast: Forecast = wire::decode(&message.payload).expect("forecast decodes");
        *seen
            .entry((forecast.server, forecast.origin_s))
            .or_default() += 1;
    }
}

/// Messages the FORECASTS stream has ever stored (its last sequence number).
async fn forecasts_stored(bus: &Bus) -> u64 {
    let mut stream = bus
        .jetstream()
        .get_stream(bus.subjects().stream_name(StreamKind::Forecasts))
        .await
        .expect("forecasts stream");
    stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence
}

/// The worker's counters once `done` holds for them (they are updated just after the
/// forecasts are stored), or the last ones read after 10 s.
async fn counters_when(
    worker: &actix::Addr<predictor::Predictor>,
    done: impl Fn(&predictor::PredictorCounters) -> bool,
) -> predictor::PredictorCounters {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counters = worker.send(GetCounters).await.expect("worker answers");
        if done(&counters) || Instant::now() > deadline {
            return counters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shipped model on real ONNX Runtime reproduces every golden case (holes and short
/// histories included), batched and alone, with finite outputs throughout.
#[test]
fn golden_fixtures_match_on_onnx_runtime() {
    let (tolerance, cases) = golden();
    let settings = Settings::default();
    let mut options = ModelOptions::from_settings(&settings).expect("onnx runtime found");
    options.intra_threads = 1;
    let mut model = OnnxModel::load(&shipped_model(), &options).expect("shipped model loads");
    let mut batch = ModelBatch::default();
    for case in &cases {
        batch.push(
            &case.past_values,
            case.metric,
            case.profile,
            case.last_timestamp,
        );
    }
    assert!(
        cases[sparsest(&cases)]
            .past_values
            .iter()
            .any(|v| v.is_nan()),
        "the fixture has a case with steps not observed"
    );
    let outputs = model.run(&batch).expect("batch runs");
    for (row, case) in cases.iter().enumerate() {
        for (name, got, want) in [
            ("quantiles", outputs.quantiles_of(row), &case.quantiles),
            (
                "variable_weights",
                outputs.weights_of(row),
                &case.variable_weights,
            ),
            ("attention", outputs.attention_of(row), &case.attention),
        ] {
            assert!(
                got.iter().all(|value| value.is_finite()),
                "case {row} {name}"
            );
            let worst = worst_difference(got, want);
            assert!(worst <= tolerance, "case {row} {name}: differs by {worst}");
        }
    }
    let mut single = ModelBatch::default();
    let case = &cases[sparsest(&cases)];
    single.push(
        &case.past_values,
        case.metric,
        case.profile,
        case.last_timestamp,
    );
    let alone = model.run(&single).expect("single runs");
    assert!(worst_difference(alone.quantiles_of(0), &case.quantiles) <= tolerance);
}

/// A job published on the bus comes back as a forecast equal to the golden case, with step
/// times, model name, drivers and the Nats-Msg-Id that dedupes it; the forecast carries only
/// the job's metric.
#[actix::test]
async fn one_job_end_to_end_matches_golden() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = predictor_settings(&nats, "solo");
    let worker = predictor::spawn(&settings, bus.clone())
        .await
        .expect("predictor starts");
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let (tolerance, cases) = golden();
    let case = &cases[sparsest(&cases)];
    publish_jobs(&bus, &[job_from(case, "ppdb007")]).await;
    let messages = collect(&mut forecasts, 1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1, "one forecast");
    let headers = messages[0].headers.as_ref().expect("headers");
    let expected_id = format!("ppdb007-{}", case.last_timestamp);
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|value| value.as_str()),
        Some(expected_id.as_str())
    );
    let forecast: Forecast = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(forecast.server, "ppdb007");
    assert_eq!(forecast.model, shipped_name());
    assert_eq!(forecast.origin_s, case.last_timestamp);
    assert_eq!(forecast.step_s[0], case.last_timestamp + 300);
    assert_eq!(forecast.step_s.len(), 96);
    assert_eq!(forecast.metrics.len(), 1, "only the metric the job had");
    let series = &forecast.metrics[case.metric.name()];
    let observed = case.past_values.iter().filter(|v| v.is_finite()).count();
    assert_eq!(series.observed_steps as usize, observed);
    for (quantile, values) in [&series.p10, &series.p50, &series.p90]
        .into_iter()
        .enumerate()
    {
        let want: Vec<f32> = (0..96)
            .map(|step| case.quantiles[step * 3 + quantile])
            .collect();
        let worst = worst_difference(values, &want);
        assert!(worst <= tolerance, "q{quantile}: {worst}");
    }
    let best = case
        .variable_weights
        .iter()
        .copied()
        .fold(f32::MIN, f32::max);
    assert!((forecast.drivers[0].weight - best).abs() <= tolerance);
    let counters = counters_when(&worker, |c| c.sent == 1).await;
    assert_eq!((counters.received, counters.sent), (1, 1));
}

/// A server with several metrics gets each metric forecast exactly as the model forecasts that
/// metric alone: no metric moves another's forecast, whatever else the server reports.
#[actix::test]
async fn metrics_are_forecast_independently() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = predictor_settings(&nats, "independent");
    let _worker = predictor::spawn(&settings, bus.clone()).await.unwrap();
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let (_, cases) = golden();
    // Two different metrics' histories on one server (the first case's profile and origin).
    let first = &cases[0];
    let second = cases
        .iter()
        .find(|case| case.metric != first.metric)
        .expect("the fixture covers several metrics");
    let mut job = job_from(first, "pair01");
    job.metrics.push(second.metric.name().into());
    job.values.extend_from_slice(&second.past_values);
    publish_jobs(&bus, &[job]).await;
    let messages = collect(&mut forecasts, 1, Duration::from_secs(20)).await;
    let forecast: Forecast = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(forecast.metrics.len(), 2);
    let mut options = ModelOptions::from_settings(&settings).unwrap();
    options.intra_threads = 1;
    let mut model = OnnxModel::load(&shipped_model(), &options).unwrap();
    for case in [first, second] {
        let mut alone = ModelBatch::default();
        alone.push(
            &case.past_values,
            case.metric,
            first.profile,
            first.last_timestamp,
        );
        let outputs = model.run(&alone).unwrap();
        let want: Vec<f32> = outputs
            .quantiles_of(0)
            .chunks(3)
            .map(|step| step[1])
            .collect();
        let got = &forecast.metrics[case.metric.name()].p50;
        assert!(
            worst_difference(got, &want) <= 1e-5,
            "{} forecast differs with another metric beside it",
            case.metric
        );
    }
}

/// Copies the shipped model to a temporary folder and edits its model.json.
fn edited_model(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.onnx", "model.json"] {
        std::fs::copy(shipped_model().join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().join("model.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    dir
}

/// A model whose model.json disagrees with the catalog, or whose graph disagrees with its
/// model.json, is refused at start with an error naming what differs.
#[actix::test]
async fn mismatched_model_is_refused_at_start() {
    let nats = TestNats::start();
    let bus = nats.bus().await;

    let swapped = edited_model(|json| json["metrics"].as_array_mut().unwrap().swap(0, 1));
    let mut settings = predictor_settings(&nats, "strict");
    settings.predictor.model_dir = swapped.path().to_path_buf();
    let error = predictor::spawn(&settings, bus.clone()).await.unwrap_err();
    let text = error_chain(&error);
    assert!(
        text.contains("metrics: position 0 is `cpu_sys_pct` in model.json, `cpu_user_pct`"),
        "{text}"
    );

    // model.json consistent with 144-step settings, but the graph reads 288 steps.
    let shorter = edited_model(|json| {
        json["context_length"] = 144.into();
        for (list, name) in [("inputs", "past_values"), ("outputs", "attention")] {
            let tensor = json[list]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|tensor| tensor["name"] == name)
                .unwrap();
            tensor["shape"] = serde_json::json!(["batch", 144]);
        }
    });
    settings.predictor.model_dir = shorter.path().to_path_buf();
    settings.window_keeper.context_steps = 144;
    let text = error_chain(&predictor::spawn(&settings, bus.clone()).await.unwrap_err());
    assert!(
        text.contains(
            "input `past_values`: model.json says [batch, 144], the graph has [batch, 288]"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "output `attention`: model.json says [batch, 144], the graph has [batch, 288]"
        ),
        "{text}"
    );
}

/// `model load` switches every worker to a good model, refuses a corrupt one on every worker
/// while the old model keeps serving, and jobs after each request are forecast.
#[actix::test]
async fn hot_reload_switches_good_and_refuses_corrupt_models() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let first = predictor::spawn(&predictor_settings(&nats, "w1"), bus.clone())
        .await
        .unwrap();
    let second = predictor::spawn(&predictor_settings(&nats, "w2"), bus.clone())
        .await
        .unwrap();
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let (_, cases) = golden();

    let newer = edited_model(|json| json["version"] = "9.9.9".into());
    let replies = request_model_load(
        &bus,
        newer.path().to_str().unwrap(),
        Duration::from_secs(20),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|reply| reply.ok && reply.serving == format!("{} 9.9.9", shipped_name())),
        "{replies:?}"
    );
    publish_jobs(&bus, &[job_from(&cases[0], "ppweb001")]).await;
    let message = collect(&mut forecasts, 1, Duration::from_secs(20)).await;
    let forecast: Forecast = wire::decode(&message[0].payload).unwrap();
    assert_eq!(forecast.model_version, "9.9.9");

    let corrupt = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped_model().join("model.json"),
        corrupt.path().join("model.json"),
    )
    .unwrap();
    std::fs::write(
        corrupt.path().join("model.onnx"),
        b"\x08\x07garbage, not a graph",
    )
    .unwrap();
    let replies = request_model_load(
        &bus,
        corrupt.path().to_str().unwrap(),
        Duration::from_secs(20),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(replies.len(), 2, "{replies:?}");
    for reply in &replies {
        assert!(!reply.ok, "{reply:?}");
        assert_eq!(reply.serving, format!("{} 9.9.9", shipped_name()));
        let error = reply.error.as_deref().unwrap_or_default();
        assert!(error.contains("not a loadable ONNX graph"), "{error}");
    }
    publish_jobs(&bus, &[job_from(&cases[1], "ppweb002")]).await;
    let message = collect(&mut forecasts, 1, Duration::from_secs(20)).await;
    assert_eq!(message.len(), 1, "the old model keeps serving");
    let forecast: Forecast = wire::decode(&message[0].payload).unwrap();
    assert_eq!(
        (forecast.server.as_str(), forecast.model_version.as_str()),
        ("ppweb002", "9.9.9")
    );
    let counters = [
        first.send(GetCounters).await.unwrap(),
        second.send(GetCounters).await.unwrap(),
    ];
    assert!(
        counters
            .iter()
            .all(|c| c.reloads == 1 && c.reloads_refused == 1)
    );
}

/// Undecodable payloads, another schema version, wrong-length windows and a history too short
/// to forecast go to the dead letters with their reasons; the worker keeps forecasting.
#[actix::test]
async fn bad_jobs_go_to_dead_letters() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let worker = predictor::spawn(&predictor_settings(&nats, "strict"), bus.clone())
        .await
        .unwrap();
    let mut dead_letters = bus
        .client()
        .subscribe(bus.subjects().rejected("predictor"))
        .await
        .unwrap();
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let (_, cases) = golden();
    let jetstream = bus.jetstream();
    jetstream
        .publish(
            bus.subjects().predict_job("garbage"),
            "not msgpack \u{1}".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let mut old = job_from(&cases[0], "oldversion");
    old.v = PREDICT_JOB_VERSION - 1;
    let mut short = job_from(&cases[0], "short");
    short.values.truncate(100);
    let mut young = job_from(&cases[0], "young");
    young.values[..280].fill(f32::NAN);
    publish_jobs(&bus, &[old, short, young, job_from(&cases[0], "good")]).await;

    let rejections: BTreeMap<String, Rejection> =
        collect(&mut dead_letters, 4, Duration::from_secs(20))
            .await
            .iter()
            .map(|message| {
                let rejection: Rejection = wire::decode(&message.payload).unwrap();
                (
                    rejection.subject.rsplit('.').next().unwrap().to_string(),
                    rejection,
                )
            })
            .collect();
    assert_eq!(rejections.len(), 4, "{rejections:?}");
    assert_eq!(rejections["garbage"].kind, RejectKind::Undecodable);
    assert_eq!(rejections["oldversion"].kind, RejectKind::SchemaVersion);
    assert_eq!(rejections["short"].kind, RejectKind::BadContent);
    assert!(
        rejections["short"]
            .reason
            .contains("values has 100 entries"),
        "{}",
        rejections["short"].reason
    );
    assert!(
        rejections["young"].reason.contains("observed steps"),
        "{}",
        rejections["young"].reason
    );
    assert!(
        rejections
            .values()
            .all(|rejection| rejection.stage == "predictor")
    );
    let good = collect(&mut forecasts, 1, Duration::from_secs(20)).await;
    let forecast: Forecast = wire::decode(&good[0].payload).unwrap();
    assert_eq!(forecast.server, "good");
    let counters = counters_when(&worker, |c| c.rejected == 4 && c.sent == 1).await;
    assert_eq!((counters.rejected, counters.sent), (4, 1));
}

/// `count` jobs of whole servers: all 14 metrics each, their histories cycled from the
/// golden cases, so a job costs what a real server's does.
fn fleet_jobs(count: usize) -> Vec<PredictJob> {
    let (_, cases) = golden();
    (0..count)
        .map(|index| {
            let mut job = job_from(&cases[index % cases.len()], &format!("srv{index:04}"));
            job.last_step_s += 300 * (index as i64 % 7);
            job.metrics = Metric::ALL.iter().map(|m| m.name().to_string()).collect();
            job.values = (0..Metric::ALL.len())
                .flat_map(|m| cases[(index + m) % cases.len()].past_values.clone())
                .collect();
            job
        })
        .collect()
}

/// Two workers (`predictor.workers = 2`) share 1,000 jobs: every job yields exactly one
/// forecast (on the core subject and in the FORECASTS stream), and both did some of the work.
#[actix::test]
async fn two_workers_share_a_thousand_jobs() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = predictor_settings(&nats, "pair");
    settings.predictor.workers = 2;
    let workers = predictor::spawn_workers(&settings, bus.clone())
        .await
        .unwrap();
    assert_eq!(workers.len(), 2);
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let jobs = fleet_jobs(1000);
    publish_jobs(&bus, &jobs).await;
    let mut seen = HashMap::new();
    forecasts_per_job(
        &mut forecasts,
        &mut seen,
        jobs.len(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(seen.len(), 1000, "every job forecast");
    let duplicated = seen.values().filter(|&&count| count > 1).count();
    assert_eq!(duplicated, 0, "no job forecast twice");
    assert_eq!(forecasts_stored(&bus).await, 1000);
    let mut total = 0;
    for worker in &workers {
        let counters = counters_when(worker, |c| c.received == c.sent).await;
        assert!(counters.sent > 0, "both workers forecast: {counters:?}");
        total += counters.sent;
    }
    assert_eq!(total, 1000);
}

/// A `fleetcast run predictor` child process, killed on drop.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(settings: &Settings, worker: &str) -> WorkerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_fleetcast"))
            .args(["run", "predictor"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("FLEETCAST_NATS__URL", &settings.nats.url)
            .env("FLEETCAST_NATS__EMBEDDED", "false")
            .env("FLEETCAST_PREDICTOR__MODEL_DIR", shipped_model())
            .env("FLEETCAST_PREDICTOR__WORKER_ID", worker)
            .env("FLEETCAST_PREDICTOR__INTRA_THREADS", "1")
            .env("FLEETCAST_PREDICTOR__MAX_BATCH", "32")
            .env("FLEETCAST_PREDICTOR__ACK_WAIT_SECONDS", "2")
            .env("FLEETCAST_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fleetcast binary starts");
        WorkerProcess(child)
    }
}

/// Peak resident memory (`VmHWM`) of process `pid`, in MB.
fn peak_memory_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two worker processes share 3,000 jobs (whole servers); one is killed (SIGKILL) mid-stream. Its
/// unacknowledged jobs are redelivered to the other, so every job still yields a forecast,
/// and the FORECASTS stream holds exactly one per job (a job the killed worker had published
/// but not acknowledged may reach core subscribers twice; the stream drops the copy by its
/// Nats-Msg-Id). The surviving worker, which forecast most of the fleet, peaked under 400 MB.
#[actix::test]
async fn killed_worker_loses_no_job() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut victim = WorkerProcess::start(&nats.settings, "victim");
    let survivor = WorkerProcess::start(&nats.settings, "survivor");
    // Both workers are bound once the shared consumer has their two pull requests waiting.
    let jetstream = bus.jetstream();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stream = jetstream
            .get_stream(bus.subjects().stream_name(StreamKind::PredictJobs))
            .await
            .unwrap();
        if let Ok(mut consumer) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(predictor::CONSUMER)
            .await
            && consumer
                .info()
                .await
                .map(|info| info.num_waiting)
                .unwrap_or(0)
                >= 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "workers did not bind in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let jobs = fleet_jobs(3000);
    publish_jobs(&bus, &jobs).await;
    let mut seen = HashMap::new();
    forecasts_per_job(
        &mut forecasts,
        &mut seen,
        20,
        Duration::from_secs(30),
        Duration::ZERO,
    )
    .await;
    assert!(seen.len() >= 20, "forecasts flow before the kill");
    assert!(seen.len() < 3000, "the kill comes mid-stream");
    victim.0.kill().expect("kill the worker");
    victim.0.wait().unwrap();
    forecasts_per_job(
        &mut forecasts,
        &mut seen,
        jobs.len(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(seen.len(), 3000, "every job forecast despite the kill");
    assert_eq!(
        forecasts_stored(&bus).await,
        3000,
        "the stream stores exactly one forecast per job"
    );
    let stream = jetstream
        .get_stream(bus.subjects().stream_name(StreamKind::PredictJobs))
        .await
        .unwrap();
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(predictor::CONSUMER)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert!(
        info.delivered.consumer_sequence > 3000,
        "the victim held jobs when killed, and they were delivered again: {info:?}"
    );
    assert_eq!(info.num_ack_pending, 0, "every job acknowledged");
    let peak_mb = peak_memory_mb(survivor.0.id());
    assert!(
        peak_mb < 400.0,
        "a worker stays under 400 MB whatever the fleet: peak {peak_mb} MB"
    );
}

/// `fleetcast model load DIR` prints each worker's reply as a JSON line and fails when a
/// worker refuses the model.
#[actix::test]
async fn model_load_command_prints_every_reply() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let _worker = predictor::spawn(&predictor_settings(&nats, "cli"), bus.clone())
        .await
        .unwrap();
    let url = nats.settings.nats.url.clone();
    let command = move |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_fleetcast"))
            .args(["model", "load"])
            .arg(dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("FLEETCAST_NATS__URL", &url)
            .env("FLEETCAST_LOG__LEVEL", "warn")
            .output()
            .expect("fleetcast runs")
    };
    let run = command.clone();
    let good = tokio::task::spawn_blocking(move || run(&shipped_model()))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let replies: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON reply per line"))
        .collect();
    assert_eq!(replies.len(), 1, "{stdout}");
    assert_eq!(replies[0]["worker"], "cli");
    assert_eq!(replies[0]["ok"], true);

    let missing = tempfile::tempdir().unwrap();
    let path = missing.path().to_path_buf();
    let refused = tokio::task::spawn_blocking(move || command(&path))
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(stdout.contains("cannot read"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the model"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// A live server that reports only CPU and memory gets its first forecast two hours
/// (24 steps) after its first sample, through the real window keeper and predictor, with
/// exactly those metrics, finite, and marked as forecast from 24 observed steps.
#[actix::test]
async fn partial_server_is_forecast_after_two_hours() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = predictor_settings(&nats, "partial");
    let mut forecasts = bus
        .client()
        .subscribe(bus.subjects().forecasts_all())
        .await
        .unwrap();
    let _worker = predictor::spawn(&settings, bus.clone()).await.unwrap();
    let _keeper = fleetcast::actors::window_keeper::spawn(&settings, bus.clone())
        .await
        .unwrap();
    let step_ms = 300_000;
    let t0 = (wire::now_ms() - 86_400_000) / step_ms * step_ms;
    for step in 0..25_i64 {
        let sample = wire::MetricSample {
            v: wire::SCHEMA_VERSION,
            server: "node-a".into(),
            ts_ms: t0 + step * step_ms,
            profile: None,
            metrics: BTreeMap::from([
                ("cpu_user_pct".to_string(), 20.0 + (step % 5) as f64),
                ("mem_used_pct".to_string(), 61.0),
            ]),
        };
        bus.publish(bus.subjects().metrics("node-a"), &sample)
            .await
            .unwrap();
    }
    let messages = collect(&mut forecasts, 1, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 1, "a forecast after 24 closed steps");
    let forecast: Forecast = wire::decode(&messages[0].payload).unwrap();
    assert_eq!(forecast.server, "node-a");
    assert_eq!(forecast.origin_s, (t0 + 23 * step_ms) / 1000);
    let names: Vec<&str> = forecast.metrics.keys().map(String::as_str).collect();
    assert_eq!(names, ["cpu_user_pct", "mem_used_pct"]);
    for series in forecast.metrics.values() {
        assert_eq!(series.observed_steps, 24);
        for step in 0..96 {
            let (p10, p50, p90) = (series.p10[step], series.p50[step], series.p90[step]);
            assert!(p10.is_finite() && p90.is_finite());
            assert!(p10 <= p50 && p50 <= p90);
        }
    }
    let memory = &forecast.metrics["mem_used_pct"];
    assert!(
        (memory.p50[0] - 61.0).abs() < 1.0,
        "a constant series forecasts near its value: {}",
        memory.p50[0]
    );
}
