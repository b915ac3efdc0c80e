//! `fleetcast forecast` and `fleetcast backtest` as a user runs them: the binary, the shipped
//! model on real ONNX Runtime, and a real AWS CPU trace (an NAB excerpt, only the metric it
//! has).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nab/cpu_utilization_asg_misconfiguration_head1000.csv")
}

fn fleetcast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetcast"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FLEETCAST_LOG__LEVEL", "warn")
        .output()
        .expect("fleetcast runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain `timestamp,value` CPU trace forecasts to 96 finite, ordered p10/p50/p90 rows for
/// the one metric it has, from its last step.
#[test]
fn forecast_of_one_real_series_is_finite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("forecast.csv");
    let input = fixture();
    let output = fleetcast(&[
        "forecast",
        "--input",
        input.to_str().unwrap(),
        "--metric",
        "cpu_user_pct",
        "--server",
        "asg01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("96 rows"),
        "{}",
        text(&output.stderr)
    );
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "server",
            "metric",
            "origin",
            "step",
            "timestamp",
            "p10",
            "p50",
            "p90",
            "observed_steps"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 96);
    for row in &rows {
        assert_eq!(&row[0], "asg01");
        assert_eq!(&row[1], "cpu_user_pct");
        let q: Vec<f32> = (5..8).map(|i| row[i].parse().unwrap()).collect();
        assert!(q.iter().all(|v| v.is_finite()), "{row:?}");
        assert!(q[0] <= q[1] && q[1] <= q[2], "{row:?}");
        assert!(
            (0.0..=100.0).contains(&q[1]),
            "CPU stays a percentage: {row:?}"
        );
    }
    // 1,000 rows at 5 minutes: the last day is all observed
    assert_eq!(&rows[0][8], "288");
    // the trace's last sample is 2014-05-17 12:29 (step 12:25): the first forecast step follows
    assert_eq!(&rows[0][2], "2014-05-17T12:25:00Z");
    assert_eq!(&rows[0][4], "2014-05-17T12:30:00Z");
}

/// Origins every 12 h, counted back from the last step, give one forecast each, Parquet out.
#[test]
fn forecast_every_origin_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("forecast.parquet");
    let input = fixture();
    let output = fleetcast(&[
        "forecast",
        "--input",
        input.to_str().unwrap(),
        "--metric",
        "cpu_user_pct",
        "--origins",
        "every:12h",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // 1,000 steps: origins at the last step and every 144 before it: 7 (the first at step 135)
    assert!(stderr.contains("for 7 origins"), "{stderr}");
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|batch| batch.unwrap().num_rows()).sum();
    assert_eq!(rows, 7 * 96);
}

/// Bad rows stop the forecast with the line named, or are skipped and counted with
/// --skip-bad; a plain file without --metric says what to add.
#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cpu.csv");
    let mut body = std::fs::read_to_string(fixture()).unwrap();
    body.push_str("2014-05-17 12:34:00,not-a-number\n");
    std::fs::write(&input, body).unwrap();
    let out = dir.path().join("out.csv");
    let args = |extra: &[&'static str]| {
        let mut args = vec![
            "forecast",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fleetcast(&args)
    };
    let failed = run(args(&["--metric", "cpu_user_pct"]));
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("line 1002"), "{stderr}");
    assert!(
        stderr.contains("`not-a-number` is not a number"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-bad"), "{stderr}");
    let skipped = run(args(&["--metric", "cpu_user_pct", "--skip-bad"]));
    assert!(skipped.status.success(), "{}", text(&skipped.stderr));
    let no_metric = run(args(&[]));
    assert!(!no_metric.status.success());
    assert!(
        text(&no_metric.stderr).contains("--metric"),
        "{}",
        text(&no_metric.stderr)
    );
}

/// The backtest prints the three bands next to persistence and seasonal naive and writes the
/// same numbers as JSON, all finite, coverage a share.
#[test]
fn backtest_prints_and_writes_the_bands() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("backtest.json");
    let input = fixture();
    let output = fleetcast(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--metric",
        "cpu_user_pct",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for band in ["0-1 h", "1-4 h", "4-8 h"] {
        assert!(stdout.contains(band), "{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let bands = report["bands"].as_array().unwrap();
    assert_eq!(bands.len(), 3);
    // 1,000 steps: origins from step 287 to step 903, every 24: 26 of them
    assert_eq!(report["origins"], 26);
    for band in bands {
        for key in [
            "model_mae",
            "persistence_mae",
            "seasonal_mae",
            "model_pinball",
        ] {
            let value = band[key].as_f64().unwrap();
            assert!(value.is_finite() && value > 0.0, "{key} {band}");
        }
        let coverage = band["coverage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&coverage), "{band}");
        assert!(band["points"].as_u64().unwrap() > 100, "{band}");
    }
}
