//! The wire contract: a golden MessagePack file per payload type in `tests/fixtures/wire/`
//! decodes to the documented example and the example still encodes to it byte for byte, and
//! `nats/SUBJECTS.md` documents every subject and every payload field.
//!
//! The golden files are written by [`examples`] through this test, never by hand: after an
//! intended change of a payload type,
//!
//! ```text
//! FLEETCAST_WRITE_FIXTURES=1 cargo test --release --test tests wire::golden
//! ```
//!
//! rewrites them (review the diff: a changed file is a changed contract).

use fleetcast::subjects::Subjects;
use fleetcast::wire::{
    self, AlertAction, AlertEvent, AttentionSummary, Driver, FactorSource, FleetSummary, Forecast,
    MetricSample, ModelLoadReply, ModelLoadRequest, PREDICT_JOB_VERSION, PredictJob,
    QuantileSeries, RejectKind, Rejection, RiskFactor, RiskScore, SCHEMA_VERSION, ScenarioReply,
    ScenarioRequest, StageReport, StageStatus, TargetHealth, WireMessage,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const V: u16 = SCHEMA_VERSION;

/// One example of every payload type, every optional field set: (type name, example as
/// MessagePack, example as JSON, a check that the golden bytes decode to the example).
type Example = (
    &'static str,
    Vec<u8>,
    serde_json::Value,
    Box<dyn Fn(&[u8]) -> bool>,
);

fn example<T: WireMessage + PartialEq + 'static>(name: &'static str, value: T) -> Example {
    let bytes = wire::encode(&value);
    let json = serde_json::to_value(&value).expect("examples serialize as JSON");
    let check =
        move |golden: &[u8]| wire::decode::<T>(golden).is_ok_and(|decoded| decoded == value);
    (name, bytes, json, Box::new(check))
}

/// The examples behind the golden files.
fn examples() -> Vec<Example> {
    let series = QuantileSeries {
        p10: vec![40.0, 41.5],
        p50: vec![45.0, 46.5],
        p90: vec![50.0, 52.25],
        observed_steps: 276,
    };
    vec![
        example(
            "MetricSample",
            MetricSample {
                v: V,
                server: "ppdb001".into(),
                ts_ms: 1_767_571_200_000,
                profile: Some("database".into()),
                metrics: BTreeMap::from([
                    ("cpu_user_pct".into(), 12.5),
                    ("mem_used_pct".into(), 71.25),
                ]),
            },
        ),
        example(
            "Rejection",
            Rejection {
                v: V,
                stage: "window_keeper".into(),
                subject: "fleetcast.metrics.ppdb001".into(),
                server: Some("ppdb001".into()),
                kind: RejectKind::OutOfRange,
                reason: "mem_used_pct = 120 is outside 0–100".into(),
                at_ms: 1_767_571_200_123,
            },
        ),
        example(
            "PredictJob",
            PredictJob {
                v: PREDICT_JOB_VERSION,
                server: "ppdb001".into(),
                profile: "database".into(),
                last_step_s: 1_767_571_200,
                step_seconds: 300,
                steps: 2,
                metrics: vec!["cpu_user_pct".into(), "mem_used_pct".into()],
                values: vec![12.5, 13.0, 71.25, 71.5],
                gap_steps: 1,
            },
        ),
        example(
            "Forecast",
            Forecast {
                v: V,
                server: "ppdb001".into(),
                profile: "database".into(),
                model: "tft-v2".into(),
                model_version: "2.0.0".into(),
                issued_ms: 1_767_571_201_000,
                origin_s: 1_767_571_200,
                step_seconds: 300,
                step_s: vec![1_767_571_500, 1_767_571_800],
                metrics: BTreeMap::from([("mem_used_pct".into(), series)]),
                drivers: vec![Driver {
                    variable: "mem_used_pct".into(),
                    weight: 0.375,
                }],
                attention: AttentionSummary {
                    recent_share: 0.5,
                    oldest_share: 0.125,
                    top_hours_ago: vec![0.25, 24.0],
                },
            },
        ),
        example(
            "RiskScore",
            RiskScore {
                v: V,
                server: "ppdb001".into(),
                profile: "database".into(),
                at_ms: 1_767_571_201_500,
                sample_ms: 1_767_571_200_000,
                forecast_origin_s: Some(1_767_571_200),
                score: 88.0,
                current: 100.0,
                predicted: 60.0,
                level: "critical".into(),
                factors: vec![RiskFactor {
                    metric: "cpu".into(),
                    source: FactorSource::Current,
                    value: 97.0,
                    points: 40.0,
                }],
                forecast_status: "used".into(),
            },
        ),
        example(
            "AlertEvent",
            AlertEvent {
                v: V,
                id: "ppdb001-risk-1767571200000".into(),
                server: "ppdb001".into(),
                profile: "database".into(),
                subject: "risk".into(),
                action: AlertAction::Escalate,
                severity: "critical".into(),
                previous: "warning".into(),
                value: 88.0,
                reason: "risk 88.0 reached critical (>= 70)".into(),
                opened_ms: 1_767_571_200_000,
                at_ms: 1_767_571_500_000,
                open_seconds: 300.0,
                previous_seconds: 300.0,
            },
        ),
        example(
            "FleetSummary",
            FleetSummary {
                v: V,
                at_ms: 1_767_571_202_000,
                servers: 2,
                prob_30m: 0.25,
                prob_8h: 0.5,
                fleet_health: "healthy".into(),
                counts: BTreeMap::from([("critical".into(), 1), ("healthy".into(), 1)]),
                top_risks: vec![("ppdb001".into(), 88.0), ("ppweb001".into(), 10.5)],
                avg_risk: 49.25,
                high_risk_servers: 1,
            },
        ),
        example(
            "ScenarioRequest",
            ScenarioRequest {
                v: V,
                scenario: "critical".into(),
            },
        ),
        example(
            "ScenarioReply",
            ScenarioReply {
                v: V,
                ok: false,
                error: Some("unknown scenario `chaos`".into()),
                old_scenario: "healthy".into(),
                new_scenario: "healthy".into(),
                affected_servers: vec!["ppdb001".into()],
                affected_total: 1,
                step: 300,
                fleet_size: 90,
            },
        ),
        example(
            "ModelLoadRequest",
            ModelLoadRequest {
                v: V,
                path: "models/tft-v2".into(),
            },
        ),
        example(
            "ModelLoadReply",
            ModelLoadReply {
                v: V,
                worker: "host-42-0".into(),
                ok: false,
                serving: "tft-v2 2.0.0".into(),
                error: Some("model.json: horizon 48, expected 96".into()),
            },
        ),
        example(
            "StageStatus",
            StageStatus {
                v: V,
                stage: "window_keeper".into(),
                at_ms: 1_767_571_203_000,
                counters: BTreeMap::from([("accepted".into(), 10), ("received".into(), 11)]),
                servers: 90,
                servers_ready: 45,
                warmup_pct: 62.5,
            },
        ),
        example(
            "TargetHealth",
            TargetHealth {
                v: V,
                stage: "node_exporter".into(),
                target: "http://ppdb001:9100/metrics".into(),
                server: Some("ppdb001".into()),
                up: false,
                error: Some("no answer within 10 s".into()),
                at_ms: 1_767_571_205_000,
                last_ok_ms: Some(1_767_571_190_000),
                metrics: vec!["cpu_user_pct".into(), "mem_used_pct".into()],
            },
        ),
        example(
            "StageReport",
            StageReport {
                v: V,
                stage: "predictor".into(),
                instance: "host-42-0".into(),
                prefix: "fleetcast".into(),
                at_ms: 1_767_571_204_000,
                counters: BTreeMap::from([("consumer_lag".into(), 3), ("received".into(), 12)]),
                facts: BTreeMap::from([("model".into(), "tft-v2 2.0.0".into())]),
            },
        ),
    ]
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(format!("{name}.msgpack"))
}

/// Every payload type's golden file decodes to its example, and the example encodes to the
/// golden bytes: the wire format has not drifted. (`FLEETCAST_WRITE_FIXTURES=1` rewrites
/// the files.)
#[test]
fn golden_files_decode_and_match() {
    let write = std::env::var_os("FLEETCAST_WRITE_FIXTURES").is_some();
    for (name, bytes, _, decodes_to_example) in examples() {
        let path = fixture(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error} (FLEETCAST_WRITE_FIXTURES=1 writes it)",
                path.display()
            )
        });
        assert!(
            decodes_to_example(&golden),
            "{name}: the golden file decodes to something else"
        );
        assert_eq!(golden, bytes, "{name}: the example encodes differently");
    }
}

/// Every field name in `value` (nested maps and lists of maps included, map keys that are
/// data, like metric names, left out).
fn fields(value: &serde_json::Value, data_keys: bool, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if !data_keys {
                    into.push(key.clone());
                }
                // Maps keyed by data (metrics, counters, counts, facts): their values' fields.
                let keyed_by_data =
                    matches!(key.as_str(), "metrics" | "counters" | "counts" | "facts");
                fields(inner, keyed_by_data, into);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                fields(item, false, into);
            }
        }
        _ => {}
    }
}

/// The section of SUBJECTS.md about `name` (from its `###` heading to the next).
fn section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    doc.split("\n### ").find(|part| {
        part.lines()
            .next()
            .is_some_and(|heading| heading.split(" / ").any(|title| title.trim() == name))
    })
}

/// `nats/SUBJECTS.md` documents every payload type with each of its fields in its section,
/// and every subject the code builds.
#[test]
fn subjects_md_documents_every_subject_and_field() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("nats/SUBJECTS.md"))
            .expect("nats/SUBJECTS.md");
    let mut missing = Vec::new();
    for (name, _, json, _) in examples() {
        let Some(text) = section(&doc, name) else {
            missing.push(format!("no `### {name}` section"));
            continue;
        };
        let mut names = Vec::new();
        fields(&json, false, &mut names);
        for field in names {
            if !text.contains(&format!("`{field}`")) {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    let subjects = Subjects::default();
    for subject in [
        subjects.metrics("<server>"),
        subjects.rejected("<stage>"),
        subjects.status("<stage>"),
        subjects.predict_job("<server>"),
        subjects.forecasts("<server>"),
        subjects.risk("<server>"),
        subjects.alerts("<severity>", "<server>"),
        subjects.fleet_summary(),
        subjects.control_scenario(),
        subjects.control_model_load(),
        subjects.stage_report("<stage>", "<id>"),
    ] {
        if !doc.contains(&format!("`{subject}`")) {
            missing.push(format!("subject {subject}"));
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented in nats/SUBJECTS.md: {missing:#?}"
    );
}
