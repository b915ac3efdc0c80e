//! 100,000 random and mutated payloads on every subject the actors consume, with the whole
//! pipeline (the shipped model on ONNX Runtime) running: every actor stays alive, its
//! counters add up, and good traffic still flows. Runs with the whole-pipeline tests, one at
//! a time (`scripts/test` runs `fuzz_live::` in that group).

use crate::util::{TestNats, wait_counters};
use fleetcast::actors::stage::StageCounters;
use fleetcast::bus::round_trip;
use fleetcast::pipeline::{self, ActorKind};
use fleetcast::sim::Scenario;
use fleetcast::wire::{self, Forecast, RiskScore};
use futures::StreamExt;
use rand::{Rng, RngExt, SeedableRng};
use std::path::Path;
use std::time::Duration;

/// Payloads published in all.
const PAYLOADS: usize = 100_000;

/// A payload: random bytes, or a golden message of `kind` with bytes flipped or cut.
fn payload(rng: &mut rand_pcg::Pcg64, goldens: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_range(0..2u8) == 0 {
        let len = rng.random_range(0..300usize);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        return bytes;
    }
    let mut bytes = goldens[rng.random_range(0..goldens.len())].clone();
    for _ in 0..rng.random_range(1..4u8) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.random_range(0..bytes.len());
        if rng.random_range(0..4u8) == 0 {
            bytes.truncate(at);
        } else {
            bytes[at] ^= 1 << rng.random_range(0..8u8);
        }
    }
    bytes
}

/// Waits until a stage has handled everything it received, then checks its counters add up.
async fn settled(name: &str, counters: &StageCounters) {
    let seen = wait_counters(counters, |c| {
        c.received == c.accepted + c.rejected && c.consumer_lag == 0
    })
    .await;
    assert_eq!(
        seen.received,
        seen.accepted + seen.rejected,
        "{name}: received = accepted + rejected: {seen:?}"
    );
    assert_eq!(
        seen.rejected,
        seen.rejected_by_kind.values().sum::<u64>(),
        "{name}: every rejection has a kind: {seen:?}"
    );
}

/// Every actor survives 100,000 bad payloads across its subjects: each answers `$SRV.PING`,
/// received = accepted + rejected for each, most of the garbage is counted as rejected, and
/// new forecasts and risk scores still come out afterwards.
#[actix::test]
async fn random_payloads_on_every_subject_break_nothing() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let mut settings = nats.settings.clone();
    settings.generator.servers = 4;
    settings.generator.seed = 3;
    settings.generator.scenario = Scenario::Healthy;
    settings.generator.start = chrono::DateTime::from_timestamp(1_767_571_200, 0);
    settings.generator.backfill_hours = 25;
    settings.generator.step_interval_ms = 250;
    settings.predictor.model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tft-v3");
    settings.predictor.workers = 1;
    settings.predictor.intra_threads = 1;
    settings.window_keeper.rebuild_on_start = false;
    let subjects = bus.subjects().clone();
    let mut forecasts = bus
        .client()
        .subscribe(subjects.forecasts_all())
        .await
        .unwrap();
    let mut risk = bus.client().subscribe(subjects.risk_all()).await.unwrap();
    let running = pipeline::start(&settings, &bus, &ActorKind::ALL)
        .await
        .expect("the pipeline starts");
    // Warm: forecasts flow before the garbage.
    let first = tokio::time::timeout(Duration::from_secs(90), forecasts.next())
        .await
        .expect("a first forecast")
        .expect("subscribed");
    let real: Forecast = wire::decode(&first.payload).expect("a forecast");

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let goldens: Vec<Vec<u8>> = [
        "MetricSample",
        "PredictJob",
        "Forecast",
        "RiskScore",
        "ScenarioRequest",
        "ModelLoadRequest",
    ]
    .iter()
    .map(|name| std::fs::read(fixtures.join(format!("{name}.msgpack"))).expect("a golden file"))
    .collect();
    let servers = ["ppdb001", "ppweb002", "fuzz-1", "x"];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(12);
    for index in 0..PAYLOADS {
        let server = servers[rng.random_range(0..servers.len())];
        let subject = match rng.random_range(0..8u8) {
            0 | 1 => subjects.metrics(server),
            2 => subjects.predict_job(server),
            3 | 4 => subjects.forecasts(server),
            5 | 6 => subjects.risk(server),
            _ => subjects.control_scenario(),
        };
        let bytes = payload(&mut rng, &goldens);
        bus.client()
            .publish_with_headers(subject, fleetcast::bus::headers(), bytes.into())
            .await
            .unwrap();
        // A bounded pace: the streams' ingest buffer is never overrun.
        if index % 2_000 == 1_999 {
            round_trip(bus.client()).await.expect("the server keeps up");
        }
    }
    round_trip(bus.client()).await.expect("all sent");

    let mut stages = vec![
        (
            "window_keeper",
            running.window_keeper.as_ref().unwrap().counters.clone(),
        ),
        (
            "risk_scorer",
            running.risk_scorer.as_ref().unwrap().counters.clone(),
        ),
        (
            "alert_router",
            running.alert_router.as_ref().unwrap().counters.clone(),
        ),
    ];
    stages.extend(
        running
            .predictors
            .iter()
            .map(|p| ("predictor", p.counters.clone())),
    );
    for (name, counters) in &stages {
        settled(name, counters).await;
    }
    let scorer = running.risk_scorer.as_ref().unwrap().counters.snapshot();
    assert!(
        scorer.rejected > 10_000,
        "the garbage was counted: {scorer:?}"
    );
    crate::util::assert_pipeline_answers(&bus, "after the garbage").await;
    // Good traffic still flows: the generator's next samples give new forecasts and scores.
    // (What the subscription holds now includes the garbage this client published: skip it.)
    let mut newest = real.origin_s;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(1), forecasts.next()).await
    {
        if let Ok(forecast) = wire::decode::<Forecast>(&message.payload)
            && forecast.server == real.server
        {
            newest = newest.max(forecast.origin_s);
        }
    }
    let later = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = forecasts.next().await.expect("subscribed");
            if let Ok(forecast) = wire::decode::<Forecast>(&message.payload)
                && forecast.origin_s > newest
                && forecast.server == real.server
            {
                return forecast;
            }
        }
    })
    .await
    .expect("a new forecast after the garbage");
    let scored = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = risk.next().await.expect("subscribed");
            if let Ok(score) = wire::decode::<RiskScore>(&message.payload)
                && score.server == real.server
                && score.forecast_origin_s >= Some(later.origin_s)
            {
                return score;
            }
        }
    })
    .await
    .expect("a risk score from the new forecast");
    assert!(scored.score.is_finite());
}
