//! `fleetcast forecast`: p10/p50/p90 for every server, metric, origin and step of a history
//! file, written as CSV or Parquet.
//!
//! One output row per (server, metric, origin, step): `server`, `metric`, `origin` (start of
//! the origin step), `step` (1..horizon), `timestamp` (start of the forecast step), `p10`,
//! `p50`, `p90`, `observed_steps` (observed steps of that metric in the context). An origin
//! where no metric has the model's shortest history is skipped and counted.

use super::{
    HistoryArgs, OfflineError, Origins, Prepared, SERVERS_PER_RUN, history_at, output_format,
    progress,
};
use crate::model::forecast_histories;
use crate::wire::Forecast;
use arrow::array::{ArrayRef, Float32Array, Int32Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `fleetcast forecast`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForecastArgs {
    /// The history and the model.
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Forecast origins: `last` (the last step of each server) or `every:DURATION` counted
    /// back from it (e.g. every:2h).
    #[arg(long, default_value = "last")]
    pub origins: String,
    /// Output file: .csv or .parquet.
    #[arg(long)]
    pub out: PathBuf,
}

/// What a forecast run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastSummary {
    /// Servers in the history.
    pub servers: usize,
    /// Origins forecast.
    pub origins: usize,
    /// Origins skipped: no metric had enough history there.
    pub skipped_origins: usize,
    /// Rows written.
    pub rows: usize,
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
struct Row<'a> {
    server: &'a str,
    metric: &'a str,
    origin_s: i64,
    step: i32,
    timestamp_s: i64,
    p10: f32,
    p50: f32,
    p90: f32,
    observed_steps: i32,
}

/// Runs `fleetcast forecast`.
///
/// # Errors
/// [`OfflineError`] for a bad flag, model, library, history file, or an unwritable output.
pub fn run(args: &ForecastArgs, ort_library: &str) -> Result<ForecastSummary, OfflineError> {
    let format = output_format(&args.out)?;
    let mut prepared = Prepared::open(&args.history, ort_library)?;
    let step_seconds = prepared.model.metadata().step_seconds;
    let origins = Origins::parse(&args.origins, step_seconds).map_err(OfflineError::Usage)?;
    let context = prepared.context();
    let cuts: Vec<(usize, usize)> = prepared
        .loaded
        .servers
        .iter()
        .enumerate()
        .flat_map(|(index, server)| {
            origins
                .offsets(0, server.steps - 1)
                .into_iter()
                .map(move |origin| (index, origin))
        })
        .collect();
    let bar = progress(cuts.len(), "forecasting");
    let mut forecasts: Vec<Forecast> = Vec::with_capacity(cuts.len());
    let mut skipped_origins = 0;
    for chunk in cuts.chunks(SERVERS_PER_RUN) {
        let histories: Vec<_> = chunk
            .iter()
            .map(|&(index, origin)| {
                history_at(
                    &prepared.loaded.servers[index],
                    origin,
                    context,
                    step_seconds,
                )
            })
            .collect();
        for result in forecast_histories(&mut prepared.model, &histories, crate::wire::now_ms())? {
            match result {
                Ok(forecast) => forecasts.push(forecast),
                Err(problem) => {
                    skipped_origins += 1;
                    tracing::debug!(reason = %problem.reason, "origin skipped");
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let rows: Vec<Row> = forecasts.iter().flat_map(rows_of).collect();
    let written = rows.len();
    match format {
        "csv" => write_csv(&args.out, &rows),
        _ => write_parquet(&args.out, &rows),
    }
    .map_err(|source| OfflineError::Write {
        path: args.out.clone(),
        source,
    })?;
    Ok(ForecastSummary {
        servers: prepared.loaded.servers.len(),
        origins: forecasts.len(),
        skipped_origins,
        rows: written,
    })
}

/// A forecast's rows: per metric (name order) and step.
fn rows_of(forecast: &Forecast) -> impl Iterator<Item = Row<'_>> {
    forecast.metrics.iter().flat_map(move |(metric, series)| {
        forecast
            .step_s
            .iter()
            .enumerate()
            .map(move |(index, &timestamp_s)| Row {
                server: &forecast.server,
                metric,
                origin_s: forecast.origin_s,
                step: index as i32 + 1,
                timestamp_s,
                p10: series.p10[index],
                p50: series.p50[index],
                p90: series.p90[index],
                observed_steps: series.observed_steps as i32,
            })
    })
}

type WriteResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// RFC 3339 UTC text of unix seconds.
fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn write_csv(path: &Path, rows: &[Row]) -> WriteResult {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record([
        "server",
        "metric",
        "origin",
        "step",
        "timestamp",
        "p10",
        "p50",
        "p90",
        "observed_steps",
    ])?;
    for row in rows {
        writer.write_record([
            row.server.to_string(),
            row.metric.to_string(),
            rfc3339(row.origin_s),
            row.step.to_string(),
            rfc3339(row.timestamp_s),
            row.p10.to_string(),
            row.p50.to_string(),
            row.p90.to_string(),
            row.observed_steps.to_string(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

fn write_parquet(path: &Path, rows: &[Row]) -> WriteResult {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("server", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("origin", time(), false),
        Field::new("step", DataType::Int32, false),
        Field::new("timestamp", time(), false),
        Field::new("p10", DataType::Float32, false),
        Field::new("p50", DataType::Float32, false),
        Field::new("p90", DataType::Float32, false),
        Field::new("observed_steps", DataType::Int32, false),
    ]));
    let millis = |values: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
    };
    let floats = |pick: fn(&Row) -> f32| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(rows.iter().map(pick)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|row| row.server),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|row| row.metric),
        )),
        millis(rows.iter().map(|row| row.origin_s * 1000).collect()),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|row| row.step),
        )),
        millis(rows.iter().map(|row| row.timestamp_s * 1000).collect()),
        floats(|row| row.p10),
        floats(|row| row.p50),
        floats(|row| row.p90),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|row| row.observed_steps),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let file = std::fs::File::create(path)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
