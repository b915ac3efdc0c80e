//! `fleetcast export`: the Parquet file reads back with the fixed schema, every row and the
//! generator's labels, and holds exactly what the engine computes.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMillisecondType};
use fleetcast::catalog::Metric;
use fleetcast::export::{self, ExportArgs, ExportError};
use fleetcast::sim::{Scenario, SimConfig, Simulation};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const START_MS: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

fn read(path: &Path) -> (Vec<RecordBatch>, usize, BTreeMap<String, String>) {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let metadata = builder.metadata().clone();
    let key_values = metadata
        .file_metadata()
        .key_value_metadata()
        .map(|pairs| {
            pairs
                .iter()
                .map(|pair| (pair.key.clone(), pair.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batches, metadata.num_row_groups(), key_values)
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|value| value.unwrap().to_string())
        .collect()
}

/// A nullable column: `None` where the row has no value (an offline server's metrics).
fn optional_floats(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn floats(batch: &RecordBatch, column: &str) -> Vec<f64> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .values()
        .to_vec()
}

/// A round trip: rows, columns and types as the training pipeline expects, timestamps on
/// step boundaries, labels from their vocabularies, metadata recording the settings, and
/// values equal to the engine's for the same seed.
#[test]
fn export_round_trips_through_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ExportArgs::new(dir.path().join("fleet.parquet"));
    args.servers = 12;
    args.hours = 30; // more than a day: two row groups
    let summary = export::run(&args).unwrap();
    let steps = 30 * 12;
    assert_eq!(summary.rows, 12 * steps);
    assert_eq!(summary.steps, steps);
    assert!(summary.bytes > 0);

    let (batches, row_groups, key_values) = read(&args.out);
    assert_eq!(row_groups, 2, "one row group per simulated day");
    assert_eq!(key_values["fleetcast.seed"], "42");
    assert_eq!(key_values["fleetcast.scenario"], "natural");
    let schema = batches[0].schema();
    assert_eq!(schema.as_ref(), export::schema().as_ref());
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut expected = vec!["timestamp", "server", "profile"];
    expected.extend(Metric::ALL.iter().map(|metric| metric.name()));
    expected.extend([
        "state",
        "problem_child",
        "incident",
        "incident_intensity",
        "cascade_impact",
    ]);
    assert_eq!(names, expected);
    assert_eq!(
        schema.field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let total: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    assert_eq!(total as u64, summary.rows);

    let mut config = SimConfig::new(12, 42);
    config.start_ms = START_MS;
    let mut fleet = Simulation::new(&config).unwrap();
    let specs = fleet.servers().to_vec();
    let mut states = BTreeSet::new();
    let mut incidents = BTreeSet::new();
    let mut row = 0_usize;
    let mut computed = Vec::new();
    for batch in &batches {
        let timestamps = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let (servers, profiles) = (strings(batch, "server"), strings(batch, "profile"));
        let state = strings(batch, "state");
        let incident = strings(batch, "incident");
        let intensity = floats(batch, "incident_intensity");
        let cascade = floats(batch, "cascade_impact");
        let problem_child = batch.column_by_name("problem_child").unwrap().as_boolean();
        let metrics: Vec<Vec<Option<f64>>> = Metric::ALL
            .iter()
            .map(|metric| optional_floats(batch, metric.name()))
            .collect();
        for i in 0..batch.num_rows() {
            let server = row % 12;
            if server == 0 {
                let step = fleet.step();
                assert_eq!(timestamps.value(i), step.ts_ms);
                computed = step.rows.to_vec();
            }
            assert_eq!(timestamps.value(i), START_MS + (row / 12) as i64 * 300_000);
            assert_eq!(servers[i], specs[server].name);
            assert_eq!(profiles[i], specs[server].profile.name());
            assert_eq!(problem_child.value(i), specs[server].problem_child);
            assert_eq!(state[i], computed[server].state.name());
            assert_eq!(incident[i], computed[server].incident.name());
            assert!((0.0..=1.0).contains(&intensity[i]) && (0.0..=1.0).contains(&cascade[i]));
            for (m, column) in metrics.iter().enumerate() {
                assert_eq!(column[i], computed[server].values.map(|values| values[m]));
                assert_eq!(column[i].is_none(), state[i] == "offline");
            }
            states.insert(state[i].clone());
            incidents.insert(incident[i].clone());
            row += 1;
        }
    }
    assert!(
        states.contains("healthy") && states.len() >= 4,
        "{states:?}"
    );
    assert!(
        incidents
            .iter()
            .all(|label| ["none", "degrading", "critical"].contains(&label.as_str()))
    );
}

/// A forced scenario's labels land in the file: `--scenario critical` labels the driven
/// servers critical at full intensity once the ramp is done.
#[test]
fn export_labels_a_forced_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ExportArgs::new(dir.path().join("critical.parquet"));
    args.servers = 20;
    args.hours = 1;
    args.scenario = Scenario::Critical;
    export::run(&args).unwrap();
    let (batches, _, key_values) = read(&args.out);
    assert_eq!(key_values["fleetcast.scenario"], "critical");
    let last = batches.last().unwrap();
    let n = last.num_rows();
    let incident = strings(last, "incident");
    let intensity = floats(last, "incident_intensity");
    // The last step: 25 % of 20 servers forced critical at intensity 1.
    let forced = (n - 20..n)
        .filter(|&i| incident[i] == "critical" && intensity[i] == 1.0)
        .count();
    assert!(forced >= 5, "{forced} servers at full critical");
    assert_eq!(Scenario::Critical.name(), "critical");
}

/// `--labels` writes the ground truth beside the samples: episodes of every kind, offline
/// ones where the file's metrics are null, crossings at the values the file holds.
#[test]
fn export_writes_labels_beside_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ExportArgs::new(dir.path().join("fleet.parquet"));
    args.servers = 90;
    args.hours = 48;
    args.labels = Some(dir.path().join("labels.json"));
    let summary = export::run(&args).unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(args.labels.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(file["v"], 1);
    assert_eq!(file["servers"], 90);
    assert_eq!(file["thresholds"].as_array().unwrap().len(), 5);
    let labels = file["labels"].as_array().unwrap();
    assert_eq!(summary.labels, Some(labels.len()));

    // (server, ts) -> (state, cpu_user, mem_used) from the Parquet file.
    let (batches, _, _) = read(&args.out);
    let mut rows = BTreeMap::new();
    for batch in &batches {
        let ts = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let (servers, state) = (strings(batch, "server"), strings(batch, "state"));
        let user = optional_floats(batch, "cpu_user_pct");
        let mem = optional_floats(batch, "mem_used_pct");
        for i in 0..batch.num_rows() {
            rows.insert(
                (servers[i].clone(), ts.value(i)),
                (state[i].clone(), user[i], mem[i]),
            );
        }
    }
    let mut kinds = BTreeSet::new();
    let mut checked_crossings = 0;
    for label in labels {
        let kind = label["kind"].as_str().unwrap();
        kinds.insert(kind.to_string());
        let server = label["server"].as_str().unwrap().to_string();
        let start = label["start_ms"].as_i64().unwrap();
        let end = label["end_ms"]
            .as_i64()
            .unwrap_or(START_MS + 48 * 3_600_000);
        assert!(start < end);
        if kind == "offline" {
            for ts in (start..end).step_by(300_000) {
                let (state, user, _) = &rows[&(server.clone(), ts)];
                assert_eq!(state, "offline");
                assert_eq!(*user, None);
            }
        }
        for crossing in label["crossings"].as_array().unwrap() {
            let at = crossing["at_ms"].as_i64().unwrap();
            assert!(start <= at && at < end);
            let (_, user, mem) = &rows[&(server.clone(), at)];
            let value = match crossing["metric"].as_str().unwrap() {
                "cpu_user_pct" => user,
                "mem_used_pct" => mem,
                _ => continue,
            };
            assert_eq!(*value, crossing["value"].as_f64());
            checked_crossings += 1;
        }
    }
    for kind in [
        "degrading",
        "critical",
        "cascade",
        "critical_issue",
        "offline",
    ] {
        assert!(kinds.contains(kind), "no {kind} episode: {kinds:?}");
    }
    assert!(checked_crossings > 0);
}

/// Unusable options are refused naming the flag, before any file is written.
#[test]
fn bad_options_name_their_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ExportArgs::new(dir.path().join("bad.parquet"));
    args.start = "yesterday".into();
    let error = export::run(&args).unwrap_err();
    assert!(
        matches!(error, ExportError::Args { flag: "start", .. }),
        "{error}"
    );
    assert!(
        "chaos"
            .parse::<Scenario>()
            .unwrap_err()
            .to_string()
            .contains("chaos")
    );
    let mut args = ExportArgs::new(dir.path().join("bad.parquet"));
    args.servers = 0;
    assert!(export::run(&args).is_err());
    assert!(!args.out.exists());
}
