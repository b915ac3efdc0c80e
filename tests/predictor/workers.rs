//! Predictor workers at scale and as processes: work sharing, a worker killed mid-stream,
//! `fleetcast model load`, and a partial server's first forecast through the window keeper.

use super::*;

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
        let counters = counters_when(worker, |c| c.received == c.published).await;
        assert!(
            counters.published > 0,
            "both workers forecast: {counters:?}"
        );
        total += counters.published;
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
