//! Reading a history file into per-server step series, the way the window keeper builds
//! windows: samples are bucketed by step (`timestamp / step_seconds`), each metric's step
//! value is the mean of its samples in the step, and a step with no sample of a metric is NaN
//! (never filled).
//!
//! Two shapes are read, from CSV (with a header row) or Parquet, told apart by the file's
//! extension:
//! - **long**: `timestamp`, `server`, optional `profile`, and any subset of the 14 metric
//!   columns (an empty cell is a metric not measured in that row); other columns are ignored
//!   and named in the log;
//! - **plain**: `timestamp` and one value column (for example NAB's `timestamp,value`), read as
//!   the metric `--metric` of the server `--server` (default: the file's name).
//!
//! Timestamps are RFC 3339 (`2026-01-05T00:00:00Z`), naive date-times read as UTC
//! (`2026-01-05 00:00:00`, `2026-01-05T00:00`), unix seconds, or unix milliseconds (numbers of
//! 10^11 and more); in Parquet also a timestamp column of any unit. A row is bad when its
//! timestamp does not parse, a value is not a number, infinite or outside the metric's range,
//! or the server name or profile is invalid. Without `skip_bad` the first bad row is an error
//! naming its line (CSV: the file's line number; Parquet: the row number, header-less);
//! with it, bad rows are skipped and counted.

use crate::catalog::{METRIC_COUNT, Metric, Profile, is_valid_server_name};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::error::ArrowError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How to read a history file.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// For a plain `timestamp,value` file: the server the values belong to.
    pub server: Option<String>,
    /// For a plain file: the metric the values are.
    pub metric: Option<Metric>,
    /// Skip and count bad rows instead of failing on the first.
    pub skip_bad: bool,
    /// Step length in seconds (the model's).
    pub step_seconds: u32,
}

/// One server's history as dense step series.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSteps {
    /// Server name.
    pub server: String,
    /// Its profile: from the file, else inferred from the name.
    pub profile: Profile,
    /// Index of the first step (`timestamp / step_seconds`).
    pub first_step: i64,
    /// Steps from the first to the last sample, inclusive.
    pub steps: usize,
    /// Each metric with at least one value, catalog order: `steps` values, NaN where the step
    /// had no sample of it.
    pub metrics: Vec<(Metric, Vec<f32>)>,
}

/// What a file held.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Every server with at least one value, by name.
    pub servers: Vec<ServerSteps>,
    /// Rows read (bad ones included).
    pub rows: u64,
    /// Bad rows skipped (with `skip_bad`).
    pub skipped: u64,
    /// The first few skipped rows' reasons, `line N: reason`.
    pub skipped_examples: Vec<String>,
    /// Columns that were ignored.
    pub ignored_columns: Vec<String>,
}

/// Why a history file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The CSV reader failed (not CSV, uneven rows, bad UTF-8).
    #[error("{path} is not readable as CSV")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What the reader said (it names the line).
        #[source]
        source: csv::Error,
    },
    /// The Parquet reader failed.
    #[error("{path} is not readable as Parquet")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet column could not be converted.
    #[error("{path}: column `{column}` cannot be read as {wanted}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The type it was read as.
        wanted: &'static str,
        /// What arrow said.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The file's columns are not one of the two shapes, or a flag is missing.
    #[error("{path}: {reason}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A bad row (without `skip_bad`).
    #[error("{path}, line {line}: {reason} (--skip-bad skips and counts bad rows)")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// Line (CSV) or row (Parquet) number, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// No row held a usable value.
    #[error("{path}: no usable row ({rows} read, {skipped} bad)")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Rows read.
        rows: u64,
        /// Bad rows.
        skipped: u64,
    },
}

/// Bad rows named in [`Loaded::skipped_examples`].
const SKIPPED_EXAMPLES: usize = 5;

/// Where each column of the file goes.
#[derive(Debug, Clone)]
struct Layout {
    timestamp: usize,
    server: Option<usize>,
    profile: Option<usize>,
    /// (column, metric)
    metrics: Vec<(usize, Metric)>,
    /// For a plain file: the server every row belongs to.
    fixed_server: Option<String>,
    ignored: Vec<String>,
}

impl Layout {
    fn of(columns: &[String], path: &Path, options: &InputOptions) -> Result<Layout, InputError> {
        let shape = |reason: String| InputError::Shape {
            path: path.to_path_buf(),
            reason,
        };
        let find = |name: &str| columns.iter().position(|column| column.trim() == name);
        let timestamp = find("timestamp").ok_or_else(|| {
            shape(format!(
                "no `timestamp` column (columns: {})",
                columns.join(", ")
            ))
        })?;
        let server = find("server");
        let profile = find("profile");
        let mut metrics = Vec::new();
        let mut ignored = Vec::new();
        for (index, column) in columns.iter().enumerate() {
            if [Some(timestamp), server, profile].contains(&Some(index)) {
                continue;
            }
            match Metric::from_name(column.trim()) {
                Some(metric) => metrics.push((index, metric)),
                None => ignored.push(column.clone()),
            }
        }
        if server.is_some() {
            if metrics.is_empty() {
                return Err(shape(format!(
                    "a long file needs at least one metric column named as in the catalog \
                     (cpu_user_pct, mem_used_pct, ...); found {}",
                    columns.join(", ")
                )));
            }
            return Ok(Layout {
                timestamp,
                server,
                profile,
                metrics,
                fixed_server: None,
                ignored,
            });
        }
        // plain: timestamp + one value column
        let values: Vec<usize> = (0..columns.len()).filter(|&i| i != timestamp).collect();
        if values.len() != 1 {
            return Err(shape(format!(
                "without a `server` column the file must be `timestamp,value` (found {})",
                columns.join(", ")
            )));
        }
        let metric = options.metric.ok_or_else(|| {
            shape("a `timestamp,value` file needs --metric NAME (one of the 14 metrics)".into())
        })?;
        let fixed_server = match &options.server {
            Some(server) => server.clone(),
            None => server_from_path(path),
        };
        if !is_valid_server_name(&fixed_server) {
            return Err(shape(format!(
                "`{fixed_server}` is not a valid server name: give --server NAME (letters, \
                 digits, - and _)"
            )));
        }
        Ok(Layout {
            timestamp,
            server: None,
            profile: None,
            metrics: vec![(values[0], metric)],
            fixed_server: Some(fixed_server),
            ignored: Vec::new(),
        })
    }
}

/// The file's stem as a server name: characters other than letters, digits, `-` and `_`
/// become `_`.
fn server_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|stem| {
            stem.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a timestamp into unix milliseconds (see the module doc for the forms read).
///
/// # Errors
/// A reason naming the text when it is none of the forms.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<f64>() {
        return unix_number(number);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc().timestamp_millis());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .map_or(0, |time| time.and_utc().timestamp_millis()));
    }
    Err(format!(
        "timestamp `{text}` is not RFC 3339, `YYYY-MM-DD HH:MM:SS`, or unix seconds/milliseconds"
    ))
}

/// Unix seconds, or milliseconds for numbers of 10^11 and more (year 5138 in seconds), as ms.
fn unix_number(number: f64) -> Result<i64, String> {
    if !number.is_finite() {
        return Err(format!("timestamp {number} is not a time"));
    }
    Ok(if number.abs() >= 1e11 {
        number as i64
    } else {
        (number * 1000.0) as i64
    })
}

/// Checks one metric value.
fn check_value(metric: Metric, value: f64) -> Result<f64, String> {
    let (low, high) = metric.range();
    if !value.is_finite() {
        return Err(format!("{metric} is {value}"));
    }
    if value < low || value > high {
        return Err(format!("{metric} = {value} is outside {low}–{high}"));
    }
    Ok(value)
}

/// One server's samples bucketed by step: per step, per metric sum and count.
#[derive(Debug, Default)]
struct ServerBuckets {
    profile: Option<Profile>,
    steps: BTreeMap<i64, ([f64; METRIC_COUNT], [u32; METRIC_COUNT])>,
}

/// Collects rows into per-server step buckets and keeps the bad-row policy.
struct Collector<'a> {
    path: &'a Path,
    options: &'a InputOptions,
    step_ms: i64,
    servers: HashMap<String, ServerBuckets>,
    rows: u64,
    skipped: u64,
    skipped_examples: Vec<String>,
}

impl<'a> Collector<'a> {
    fn new(path: &'a Path, options: &'a InputOptions) -> Self {
        Self {
            path,
            options,
            step_ms: i64::from(options.step_seconds.max(1)) * 1000,
            servers: HashMap::new(),
            rows: 0,
            skipped: 0,
            skipped_examples: Vec::new(),
        }
    }

    /// Records a bad row: an error, or a count with `skip_bad`.
    fn bad(&mut self, line: u64, reason: String) -> Result<(), InputError> {
        if !self.options.skip_bad {
            return Err(InputError::BadRow {
                path: self.path.to_path_buf(),
                line,
                reason,
            });
        }
        self.skipped += 1;
        if self.skipped_examples.len() < SKIPPED_EXAMPLES {
            self.skipped_examples.push(format!("line {line}: {reason}"));
        }
        Ok(())
    }

    /// Adds one row: `values` are (metric, text or number) pairs already split out.
    fn row(
        &mut self,
        line: u64,
        timestamp: Result<i64, String>,
        server: &str,
        profile: Option<&str>,
        values: &[(Metric, Option<Result<f64, String>>)],
    ) -> Result<(), InputError> {
        self.rows += 1;
        let ts_ms = match timestamp {
            Ok(ts_ms) => ts_ms,
            Err(reason) => return self.bad(line, reason),
        };
        if !is_valid_server_name(server) {
            return self.bad(line, format!("server `{server}` is not a valid name"));
        }
        let profile = match profile.map(str::trim).filter(|text| !text.is_empty()) {
            None => None,
            Some(text) => match text.parse::<Profile>() {
                Ok(profile) => Some(profile),
                Err(reason) => return self.bad(line, reason),
            },
        };
        let mut checked = Vec::with_capacity(values.len());
        for (metric, value) in values {
            match value {
                None => {}
                Some(Ok(value)) => match check_value(*metric, *value) {
                    Ok(value) => checked.push((*metric, value)),
                    Err(reason) => return self.bad(line, reason),
                },
                Some(Err(reason)) => return self.bad(line, reason.clone()),
            }
        }
        if checked.is_empty() {
            return Ok(());
        }
        let buckets = self.servers.entry(server.to_string()).or_default();
        if profile.is_some() {
            buckets.profile = profile;
        }
        let (sums, counts) = buckets
            .steps
            .entry(ts_ms.div_euclid(self.step_ms))
            .or_insert(([0.0; METRIC_COUNT], [0; METRIC_COUNT]));
        for (metric, value) in checked {
            sums[metric.index()] += value;
            counts[metric.index()] += 1;
        }
        Ok(())
    }

    fn finish(self, ignored_columns: Vec<String>) -> Result<Loaded, InputError> {
        let mut servers: Vec<ServerSteps> = self
            .servers
            .into_iter()
            .filter_map(|(server, buckets)| dense(server, buckets))
            .collect();
        if servers.is_empty() {
            return Err(InputError::Empty {
                path: self.path.to_path_buf(),
                rows: self.rows,
                skipped: self.skipped,
            });
        }
        servers.sort_by(|a, b| a.server.cmp(&b.server));
        Ok(Loaded {
            servers,
            rows: self.rows,
            skipped: self.skipped,
            skipped_examples: self.skipped_examples,
            ignored_columns,
        })
    }
}

/// Step means from the first to the last step, NaN where a metric had no sample.
fn dense(server: String, buckets: ServerBuckets) -> Option<ServerSteps> {
    let first_step = *buckets.steps.keys().next()?;
    let last_step = *buckets.steps.keys().next_back()?;
    let steps = usize::try_from(last_step - first_step + 1).ok()?;
    let mut columns = vec![vec![f32::NAN; steps]; METRIC_COUNT];
    let mut seen = [false; METRIC_COUNT];
    for (step, (sums, counts)) in &buckets.steps {
        let offset = (step - first_step) as usize;
        for metric in 0..METRIC_COUNT {
            if counts[metric] > 0 {
                columns[metric][offset] = (sums[metric] / f64::from(counts[metric])) as f32;
                seen[metric] = true;
            }
        }
    }
    let metrics = Metric::ALL
        .into_iter()
        .zip(columns)
        .filter(|(metric, _)| seen[metric.index()])
        .collect();
    Some(ServerSteps {
        profile: buckets.profile.unwrap_or_else(|| Profile::infer(&server)),
        server,
        first_step,
        steps,
        metrics,
    })
}

/// Reads a CSV or Parquet history file (by its extension: `.csv`, `.parquet` / `.pq`).
///
/// # Errors
/// An [`InputError`] naming the file and what is wrong: unreadable, another shape, a bad row
/// (without `skip_bad`), or nothing usable.
pub fn read_history(path: &Path, options: &InputOptions) -> Result<Loaded, InputError> {
    let extension = path
        .extension()
        .map(|ext| ext.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "csv" => read_csv(path, options),
        "parquet" | "pq" => read_parquet(path, options),
        _ => Err(InputError::Shape {
            path: path.to_path_buf(),
            reason: "unknown file type: name it .csv or .parquet".into(),
        }),
    }
}

fn read_csv(path: &Path, options: &InputOptions) -> Result<Loaded, InputError> {
    let csv_error = |source| InputError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|source| match source.kind() {
            csv::ErrorKind::Io(_) => match source.into_kind() {
                csv::ErrorKind::Io(source) => InputError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                _ => unreachable!("matched as io"),
            },
            _ => csv_error(source),
        })?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_string)
        .collect();
    let layout = Layout::of(&columns, path, options)?;
    let mut collector = Collector::new(path, options);
    let mut record = csv::StringRecord::new();
    let mut values = Vec::with_capacity(layout.metrics.len());
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        let field = |index: usize| record.get(index).unwrap_or("");
        values.clear();
        for &(column, metric) in &layout.metrics {
            let text = field(column);
            values.push((
                metric,
                (!text.is_empty() && !text.eq_ignore_ascii_case("nan")).then(|| {
                    text.parse::<f64>()
                        .map_err(|_| format!("{metric} `{text}` is not a number"))
                }),
            ));
        }
        let server = match (&layout.fixed_server, layout.server) {
            (Some(server), _) => server.as_str(),
            (None, Some(column)) => field(column),
            (None, None) => "",
        };
        let profile = layout.profile.map(field);
        collector.row(
            line,
            parse_timestamp(field(layout.timestamp)),
            server,
            profile,
            &values,
        )?;
    }
    collector.finish(layout.ignored)
}

fn read_parquet(path: &Path, options: &InputOptions) -> Result<Loaded, InputError> {
    let parquet_error = |source| InputError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_error)?;
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let layout = Layout::of(&columns, path, options)?;
    let reader = builder.build().map_err(parquet_error)?;
    let mut collector = Collector::new(path, options);
    let mut row_number = 0_u64;
    for batch in reader {
        let batch = batch.map_err(|source| InputError::Column {
            path: path.to_path_buf(),
            column: "*".into(),
            wanted: "a record batch",
            source,
        })?;
        let column_error = |index: usize, wanted: &'static str| {
            let column = columns[index].clone();
            move |source| InputError::Column {
                path: path.to_path_buf(),
                column,
                wanted,
                source,
            }
        };
        let cast_column = |index: usize, wanted: &'static str, to: &DataType| {
            cast(batch.column(index), to).map_err(column_error(index, wanted))
        };
        let timestamps = parquet_timestamps(batch.column(layout.timestamp))
            .map_err(column_error(layout.timestamp, "a time"))?;
        let servers = layout
            .server
            .map(|index| cast_column(index, "text", &DataType::Utf8))
            .transpose()?;
        let profiles = layout
            .profile
            .map(|index| cast_column(index, "text", &DataType::Utf8))
            .transpose()?;
        let metric_columns = layout
            .metrics
            .iter()
            .map(|&(index, metric)| {
                Ok((metric, cast_column(index, "a number", &DataType::Float64)?))
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        let mut values = Vec::with_capacity(metric_columns.len());
        for (row, timestamp) in timestamps.into_iter().enumerate() {
            row_number += 1;
            values.clear();
            for (metric, column) in &metric_columns {
                let numbers = column.as_primitive::<Float64Type>();
                values.push((
                    *metric,
                    (numbers.is_valid(row) && !numbers.value(row).is_nan())
                        .then(|| Ok(numbers.value(row))),
                ));
            }
            fn text(column: &Option<ArrayRef>, row: usize) -> Option<&str> {
                let strings = column.as_ref()?.as_string::<i32>();
                strings.is_valid(row).then(|| strings.value(row))
            }
            let server = match &layout.fixed_server {
                Some(server) => server.as_str(),
                None => text(&servers, row).unwrap_or(""),
            };
            let profile = text(&profiles, row);
            collector.row(row_number, timestamp, server, profile, &values)?;
        }
    }
    collector.finish(layout.ignored)
}

/// A Parquet timestamp column as unix ms per row: a timestamp or date type of any unit,
/// numbers (unix seconds or milliseconds), or text.
fn parquet_timestamps(column: &ArrayRef) -> Result<Vec<Result<i64, String>>, ArrowError> {
    let rows = 0..column.len();
    let missing = || Err("timestamp is empty".to_string());
    Ok(match column.data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let millis = cast(&millis, &DataType::Int64)?;
            let millis = millis.as_primitive::<Int64Type>();
            rows.map(|row| match millis.is_valid(row) {
                true => Ok(millis.value(row)),
                false => missing(),
            })
            .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(column, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            rows.map(|row| match text.is_valid(row) {
                true => parse_timestamp(text.value(row)),
                false => missing(),
            })
            .collect()
        }
        _ => {
            let numbers = cast(column, &DataType::Float64)?;
            let numbers = numbers.as_primitive::<Float64Type>();
            rows.map(|row| match numbers.is_valid(row) {
                true => unix_number(numbers.value(row)),
                false => missing(),
            })
            .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn options() -> InputOptions {
        InputOptions {
            server: None,
            metric: None,
            skip_bad: false,
            step_seconds: 300,
        }
    }

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    /// Every timestamp form reads as the same instant.
    #[test]
    fn timestamps_in_every_form() {
        let expected = 1_767_571_200_000;
        for text in [
            "2026-01-05T00:00:00Z",
            "2026-01-05T01:00:00+01:00",
            "2026-01-05 00:00:00",
            "2026-01-05T00:00",
            "2026-01-05",
            "1767571200",
            "1767571200000",
        ] {
            assert_eq!(parse_timestamp(text), Ok(expected), "{text}");
        }
        assert!(
            parse_timestamp("yesterday")
                .unwrap_err()
                .contains("yesterday")
        );
    }

    /// A plain NAB-style file becomes one server with one metric, step means, NaN for a gap.
    #[test]
    fn plain_file_is_one_metric() {
        let (_dir, path) = file(
            "ec2_cpu.csv",
            "timestamp,value\n2026-01-05 00:00:00,10\n2026-01-05 00:01:00,20\n2026-01-05 00:10:00,5\n",
        );
        let options = InputOptions {
            metric: Some(Metric::CpuUserPct),
            ..options()
        };
        let loaded = read_history(&path, &options).unwrap();
        let server = &loaded.servers[0];
        assert_eq!(server.server, "ec2_cpu");
        assert_eq!(server.steps, 3);
        assert_eq!(server.metrics.len(), 1);
        let values = &server.metrics[0].1;
        assert_eq!(values[0], 15.0);
        assert!(values[1].is_nan());
        assert_eq!(values[2], 5.0);
    }

    /// A plain file without --metric says what to add.
    #[test]
    fn plain_file_needs_a_metric() {
        let (_dir, path) = file("x.csv", "timestamp,value\n2026-01-05 00:00:00,10\n");
        let error = read_history(&path, &options()).unwrap_err().to_string();
        assert!(error.contains("--metric"), "{error}");
    }

    /// A long file keeps each server's own subset of metrics; empty cells are not measured.
    #[test]
    fn long_file_keeps_subsets() {
        let (_dir, path) = file(
            "fleet.csv",
            "timestamp,server,profile,cpu_user_pct,mem_used_pct,note\n\
             2026-01-05T00:00:00Z,web01,web_api,10,50,x\n\
             2026-01-05T00:05:00Z,web01,,12,,y\n\
             2026-01-05T00:00:00Z,db01,,,80,z\n",
        );
        let loaded = read_history(&path, &options()).unwrap();
        assert_eq!(loaded.ignored_columns, ["note"]);
        let (db, web) = (&loaded.servers[0], &loaded.servers[1]);
        assert_eq!(db.server, "db01");
        assert_eq!(db.profile, Profile::infer("db01"));
        assert_eq!(db.metrics.len(), 1);
        assert_eq!(db.metrics[0].0, Metric::MemUsedPct);
        assert_eq!(web.profile, Profile::WebApi);
        assert_eq!(web.metrics[0].1, vec![10.0, 12.0]);
        assert!(web.metrics[1].1[1].is_nan());
    }

    /// A bad row is an error naming its line, or skipped and counted with skip_bad.
    #[test]
    fn bad_rows_name_their_line_or_are_counted() {
        let text = "timestamp,server,cpu_user_pct\n\
                    2026-01-05T00:00:00Z,a,10\n\
                    2026-01-05T00:05:00Z,a,150\n\
                    never,a,10\n\
                    2026-01-05T00:15:00Z,a,abc\n\
                    2026-01-05T00:20:00Z,a,20\n";
        let (_dir, path) = file("bad.csv", text);
        let error = read_history(&path, &options()).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("cpu_user_pct = 150"), "{error}");
        let options = InputOptions {
            skip_bad: true,
            ..options()
        };
        let loaded = read_history(&path, &options).unwrap();
        assert_eq!((loaded.rows, loaded.skipped), (5, 3));
        assert!(
            loaded.skipped_examples[1].contains("line 4"),
            "{:?}",
            loaded.skipped_examples
        );
        assert!(
            loaded.skipped_examples[2].contains("`abc`"),
            "{:?}",
            loaded.skipped_examples
        );
        assert_eq!(loaded.servers[0].steps, 5);
    }
}
