//! `fleetcast export`: runs the simulation engine ([`crate::sim`], the live generator's)
//! offline at full speed, no NATS needed, and writes training data as Parquet: the same
//! engine as the live generator, so the model trains on what it will see.
//!
//! One row per server and step, in step order, then server order. The schema is fixed
//! (the training pipeline reads it), see [`schema`]:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `timestamp` | Timestamp(ms, UTC) | start of the step |
//! | `server`, `profile` | Utf8 | name and profile |
//! | the 14 metrics, [`Metric::ALL`] order | Float64, nullable | in their units (percent, MB/s, ...); null while the server is offline (it reports nothing) |
//! | `state` | Utf8 | Markov state: healthy, morning_spike, heavy_load, critical_issue, idle, maintenance, recovery, offline |
//! | `problem_child` | Boolean | the server is a problem child |
//! | `incident` | Utf8 | ground truth: none, degrading or critical |
//! | `incident_intensity` | Float64 | 0–1 |
//! | `cascade_impact` | Float64 | 0–1: upstream envelope × strength (0 for sources) |
//!
//! Rows are written in row groups of at most one simulated day and about a million rows, so
//! memory stays bounded for big exports. The file's key-value metadata records the
//! generator settings (`fleetcast.seed`, `fleetcast.servers`, ...).

use crate::catalog::Metric;
use crate::sim::{CATALOG_THRESHOLDS, Scenario, SimConfig, SimError, Simulation};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Array, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Rows per row group, at most (rounded to whole steps; at least one step).
const MAX_GROUP_ROWS: usize = 1 << 20;

/// Options of `fleetcast export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Hours of simulated history.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Fleet size, 1–100000.
    #[arg(long, default_value_t = 90)]
    pub servers: u32,
    /// Random seed: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Start of the first step (RFC 3339, UTC hours drive the diurnal curve).
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// Step length in seconds (one row per server per step).
    #[arg(long, default_value_t = 300)]
    pub step_seconds: u32,
    /// Scenario: healthy, natural, degrading, critical or cascade.
    #[arg(long, default_value = "natural")]
    pub scenario: Scenario,
    /// Share of problem children, 0–0.5.
    #[arg(long, default_value_t = 0.10)]
    pub problem_child_share: f64,
    /// Output file (Parquet).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the ground truth (every incident, cascade, CRITICAL_ISSUE and offline
    /// episode, with its first threshold crossings) to this JSON file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Standard deviations above a profile's normal the labels' thresholds are lifted by,
    /// as the alert router lifts its rules: `alerts.profile_normal_sigmas` from the
    /// settings (0: the catalog's thresholds for every profile).
    #[arg(skip)]
    pub profile_normal_sigmas: f64,
}

impl ExportArgs {
    /// The defaults with `out` as the file.
    pub fn new(out: impl Into<PathBuf>) -> ExportArgs {
        ExportArgs {
            hours: 24,
            servers: 90,
            seed: 42,
            start: "2026-01-05T00:00:00Z".into(),
            step_seconds: 300,
            scenario: Scenario::Natural,
            problem_child_share: 0.10,
            out: out.into(),
            labels: None,
            profile_normal_sigmas: crate::settings::AlertSettings::default().profile_normal_sigmas,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Fleet size.
    pub servers: u32,
    /// Steps simulated.
    pub steps: u64,
    /// Row groups written.
    pub row_groups: usize,
    /// File size.
    pub bytes: u64,
    /// Episodes written to the labels file, when one was asked for.
    pub labels: Option<usize>,
    /// Wall time.
    pub seconds: f64,
}

impl ExportSummary {
    /// Rows written per second of wall time.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exported {} rows ({} servers × {} steps) to {}: {:.1} MB in {:.2} s ({:.0} rows/s)",
            self.rows,
            self.servers,
            self.steps,
            self.path.display(),
            self.bytes as f64 / 1e6,
            self.seconds,
            self.rows_per_second()
        )?;
        if let Some(labels) = self.labels {
            write!(f, "; {labels} labelled episodes")?;
        }
        Ok(())
    }
}

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An option is unusable.
    #[error("--{flag}: {reason}")]
    Args {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The options do not make a fleet.
    #[error(transparent)]
    Simulation(#[from] SimError),
    /// The output file could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("writing parquet")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building a batch failed.
    #[error("building a record batch")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The export's Arrow schema (fixed: the training pipeline reads it).
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("server", DataType::Utf8, false),
        Field::new("profile", DataType::Utf8, false),
    ];
    fields.extend(
        Metric::ALL
            .iter()
            .map(|metric| Field::new(metric.name(), DataType::Float64, true)),
    );
    fields.extend([
        Field::new("state", DataType::Utf8, false),
        Field::new("problem_child", DataType::Boolean, false),
        Field::new("incident", DataType::Utf8, false),
        Field::new("incident_intensity", DataType::Float64, false),
        Field::new("cascade_impact", DataType::Float64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Columns of one row group being filled.
struct GroupBuilder {
    timestamp: TimestampMillisecondBuilder,
    server: StringBuilder,
    profile: StringBuilder,
    metrics: Vec<Vec<Option<f64>>>,
    state: StringBuilder,
    problem_child: BooleanBuilder,
    incident: StringBuilder,
    incident_intensity: Vec<f64>,
    cascade_impact: Vec<f64>,
    rows: usize,
}

impl GroupBuilder {
    fn new(capacity: usize) -> GroupBuilder {
        GroupBuilder {
            timestamp: TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            server: StringBuilder::with_capacity(capacity, capacity * 9),
            profile: StringBuilder::with_capacity(capacity, capacity * 10),
            metrics: Metric::ALL
                .iter()
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
            state: StringBuilder::with_capacity(capacity, capacity * 8),
            problem_child: BooleanBuilder::with_capacity(capacity),
            incident: StringBuilder::with_capacity(capacity, capacity * 5),
            incident_intensity: Vec::with_capacity(capacity),
            cascade_impact: Vec::with_capacity(capacity),
            rows: 0,
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ExportError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.server.finish()),
            Arc::new(self.profile.finish()),
        ];
        for values in &mut self.metrics {
            columns.push(Arc::new(Float64Array::from(std::mem::take(values))));
        }
        columns.push(Arc::new(self.state.finish()));
        columns.push(Arc::new(self.problem_child.finish()));
        columns.push(Arc::new(self.incident.finish()));
        columns.push(Arc::new(Float64Array::from(std::mem::take(
            &mut self.incident_intensity,
        ))));
        columns.push(Arc::new(Float64Array::from(std::mem::take(
            &mut self.cascade_impact,
        ))));
        self.rows = 0;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

fn arg_error(flag: &'static str, reason: impl Into<String>) -> ExportError {
    ExportError::Args {
        flag,
        reason: reason.into(),
    }
}

/// Runs the export: simulates `--hours` of `--servers` and writes `--out`. Draws a progress
/// bar on stderr (when it is a terminal) and prints the summary line there at the end.
///
/// # Errors
/// [`ExportError::Args`] for unusable options, [`ExportError::Simulation`] for a fleet out of
/// range, [`ExportError::Io`] / [`ExportError::Parquet`] when the file cannot be written.
pub fn run(args: &ExportArgs) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let scenario = args.scenario;
    let start_ms = chrono::DateTime::parse_from_rfc3339(&args.start)
        .map_err(|error| arg_error("start", format!("`{}`: {error}", args.start)))?
        .timestamp_millis();
    if args.hours == 0 {
        return Err(arg_error("hours", "must be at least 1"));
    }
    if args.step_seconds == 0 || 86_400 % args.step_seconds != 0 {
        return Err(arg_error(
            "step-seconds",
            format!("{} must divide a day", args.step_seconds),
        ));
    }
    let steps = u64::from(args.hours) * 3600 / u64::from(args.step_seconds);
    let mut fleet = Simulation::new(&SimConfig {
        servers: args.servers,
        seed: args.seed,
        step_seconds: args.step_seconds,
        problem_child_share: args.problem_child_share,
        start_ms,
        scenario,
    })?;
    if args.labels.is_some() {
        fleet.record_labels(&CATALOG_THRESHOLDS, args.profile_normal_sigmas);
    }
    let servers = fleet.servers().len();
    let steps_per_day = (86_400 / args.step_seconds) as usize;
    let group_steps = steps_per_day.min((MAX_GROUP_ROWS / servers).max(1));

    let schema = schema();
    let metadata = [
        ("fleetcast.version", env!("CARGO_PKG_VERSION").to_string()),
        ("fleetcast.seed", args.seed.to_string()),
        ("fleetcast.servers", args.servers.to_string()),
        ("fleetcast.start", args.start.clone()),
        ("fleetcast.step_seconds", args.step_seconds.to_string()),
        ("fleetcast.hours", args.hours.to_string()),
        ("fleetcast.scenario", scenario.name().to_string()),
        (
            "fleetcast.problem_child_share",
            args.problem_child_share.to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| KeyValue::new(key.to_string(), value))
    .collect();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(group_steps * servers))
        .set_key_value_metadata(Some(metadata))
        .build();
    let io_error = |source| ExportError::Io {
        path: args.out.clone(),
        source,
    };
    let file = std::fs::File::create(&args.out).map_err(io_error)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))?;

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(steps),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );

    let layout = fleet.layout().clone();
    let specs = layout.servers();
    let mut group = GroupBuilder::new(group_steps * servers);
    let mut written = 0_u64;
    let mut row_groups = 0;
    for index in 0..steps {
        let step = fleet.step();
        for (spec, row) in specs.iter().zip(step.rows) {
            group.timestamp.append_value(step.ts_ms);
            group.server.append_value(&spec.name);
            group.profile.append_value(spec.profile.name());
            for (m, column) in group.metrics.iter_mut().enumerate() {
                column.push(row.values.map(|values| values[m]));
            }
            group.state.append_value(row.state.name());
            group.problem_child.append_value(spec.problem_child);
            group.incident.append_value(row.incident.name());
            group.incident_intensity.push(row.incident_intensity);
            group.cascade_impact.push(row.cascade_impact);
        }
        group.rows += specs.len();
        if (index + 1) % group_steps as u64 == 0 || index + 1 == steps {
            let batch = group.finish(&schema)?;
            written += batch.num_rows() as u64;
            writer.write(&batch)?;
            writer.flush()?;
            row_groups += 1;
        }
        progress.inc(1);
    }
    writer.close()?;
    progress.finish_and_clear();
    let bytes = std::fs::metadata(&args.out).map_err(io_error)?.len();
    let labels = match (&args.labels, fleet.labels_file(args.seed)) {
        (Some(path), Some(file)) => {
            file.write(path).map_err(|source| ExportError::Io {
                path: path.clone(),
                source,
            })?;
            Some(file.labels.len())
        }
        _ => None,
    };
    let summary = ExportSummary {
        path: args.out.clone(),
        rows: written,
        servers: args.servers,
        steps,
        row_groups,
        bytes,
        labels,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!("{summary}");
    Ok(summary)
}
