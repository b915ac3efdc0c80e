//! Forecasts and backtests from a history file, with no bus: `fleetcast forecast` and
//! `fleetcast backtest`.
//!
//! Both read a history file ([`input`]: long format with any subset of the 14 metrics, or a
//! plain `timestamp,value` series), aggregate it into steps as the window keeper does, cut
//! each server's history at the chosen forecast origins into the model's context (NaN where
//! not observed), and run the same model code as the predictor
//! ([`crate::model::forecast_histories`]). `forecast` writes the quantiles ([`forecast`]);
//! `backtest` scores them against what happened, next to persistence and seasonal naive
//! ([`backtest`]).

pub mod backtest;
pub mod forecast;
pub mod input;

use crate::catalog::Metric;
use crate::model::{History, ModelContract, ModelError, ModelMetadata, ModelOptions, OnnxModel};
use input::{InputOptions, Loaded, ServerSteps};
use std::path::{Path, PathBuf};

/// Servers forecast per ONNX Runtime run (each contributes one row per metric).
const SERVERS_PER_RUN: usize = 32;

/// Which forecast origins to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origins {
    /// Only the last step of each server's history.
    Last,
    /// Every this many steps, counted back from the last usable step.
    Every(usize),
}

impl Origins {
    /// Parses `last` or `every:<duration>` (`every:2h`, `every:30m`, `every:1d`, `every:24`
    /// steps) for a step of `step_seconds`.
    ///
    /// # Errors
    /// A reason naming the text when it is neither, or not a whole number of steps.
    pub fn parse(text: &str, step_seconds: u32) -> Result<Origins, String> {
        if text == "last" {
            return Ok(Origins::Last);
        }
        let bad = || format!("origins `{text}`: use `last` or `every:DURATION` (e.g. every:2h)");
        let spec = text.strip_prefix("every:").ok_or_else(bad)?;
        let (number, unit_seconds) = match spec.char_indices().find(|(_, c)| c.is_alphabetic()) {
            None => (spec, u64::from(step_seconds)),
            Some((at, _)) => {
                let unit = match &spec[at..] {
                    "s" => 1,
                    "m" | "min" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(bad()),
                };
                (&spec[..at], unit)
            }
        };
        let count: u64 = number.parse().map_err(|_| bad())?;
        let seconds = count * unit_seconds;
        let step = u64::from(step_seconds);
        if seconds == 0 || !seconds.is_multiple_of(step) {
            return Err(format!(
                "origins `{text}`: {seconds} s is not a positive whole number of {step} s steps"
            ));
        }
        Ok(Origins::Every((seconds / step) as usize))
    }

    /// The origin offsets (indices into a server's steps) from `first` to `last` inclusive,
    /// oldest first; `Last` is only `last`.
    fn offsets(self, first: usize, last: usize) -> Vec<usize> {
        match self {
            Origins::Last => vec![last],
            Origins::Every(every) => {
                let mut offsets: Vec<usize> = (0..)
                    .map(|k| last.checked_sub(k * every))
                    .take_while(|offset| offset.is_some_and(|offset| offset >= first))
                    .flatten()
                    .collect();
                offsets.reverse();
                offsets
            }
        }
    }
}

/// The input options shared by `forecast` and `backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// History file: .csv or .parquet, long (timestamp, server, optional profile, any of the 14
    /// metric columns) or plain `timestamp,value` (with --metric).
    #[arg(long)]
    pub input: PathBuf,
    /// Model directory (model.onnx + model.json).
    #[arg(long, default_value = "models/tft-v3")]
    pub model: PathBuf,
    /// For a plain `timestamp,value` file: the metric its values are (e.g. cpu_user_pct).
    #[arg(long)]
    pub metric: Option<String>,
    /// For a plain file: the server name (default: the file's name).
    #[arg(long)]
    pub server: Option<String>,
    /// Skip and count bad rows instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// ONNX Runtime threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Why an offline command failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The model or ONNX Runtime is unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The history file is unusable.
    #[error(transparent)]
    Input(#[from] input::InputError),
    /// A flag's value is wrong.
    #[error("{0}")]
    Usage(String),
    /// The output could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The model opened for offline use, with the history file read at its step.
pub struct Prepared {
    /// The checked model on ONNX Runtime.
    pub model: OnnxModel,
    /// The history, per server.
    pub loaded: Loaded,
}

impl Prepared {
    /// Opens the model (its own step, context and shortest history are the contract) and reads
    /// the history at the model's step.
    ///
    /// # Errors
    /// [`OfflineError`] for an unusable model, library, metric name or history file.
    pub fn open(args: &HistoryArgs, ort_library: &str) -> Result<Prepared, OfflineError> {
        let metadata = ModelMetadata::read(&args.model)?;
        let options = ModelOptions {
            library: crate::model::resolve_library(ort_library)?,
            intra_threads: args.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            intra_spinning: false,
            contract: ModelContract {
                step_seconds: metadata.step_seconds,
                context_steps: metadata.context_length,
                min_observed_steps: metadata.min_observed_steps,
            },
        };
        let metric = args
            .metric
            .as_deref()
            .map(|name| {
                Metric::from_name(name).ok_or_else(|| {
                    OfflineError::Usage(format!(
                        "--metric `{name}` is not one of the 14 metrics ({})",
                        Metric::ALL.map(Metric::name).join(", ")
                    ))
                })
            })
            .transpose()?;
        let model = OnnxModel::load(&args.model, &options)?;
        let loaded = input::read_history(
            &args.input,
            &InputOptions {
                server: args.server.clone(),
                metric,
                skip_bad: args.skip_bad,
                step_seconds: metadata.step_seconds,
            },
        )?;
        if loaded.skipped > 0 {
            tracing::warn!(
                skipped = loaded.skipped,
                rows = loaded.rows,
                examples = ?loaded.skipped_examples,
                "bad rows skipped"
            );
        }
        if !loaded.ignored_columns.is_empty() {
            tracing::info!(columns = ?loaded.ignored_columns, "columns ignored (not a metric)");
        }
        Ok(Prepared { model, loaded })
    }

    /// The model's context length.
    pub fn context(&self) -> usize {
        self.model.metadata().context_length as usize
    }
}

/// One server's history cut at `origin` (an index into its steps): each metric's `context`
/// values up to and including the origin, NaN before the history began.
pub fn history_at(
    server: &ServerSteps,
    origin: usize,
    context: usize,
    step_seconds: u32,
) -> History {
    let start = origin as i64 + 1 - context as i64;
    let series = server
        .metrics
        .iter()
        .map(|(metric, values)| {
            let window = (start..=origin as i64)
                .map(|index| {
                    usize::try_from(index)
                        .ok()
                        .and_then(|index| values.get(index).copied())
                        .unwrap_or(f32::NAN)
                })
                .collect();
            (*metric, window)
        })
        .collect();
    History {
        server: server.server.clone(),
        profile: server.profile,
        last_step_s: (server.first_step + origin as i64) * i64::from(step_seconds),
        series,
    }
}

/// A progress bar on stderr for `total` origins (hidden when stderr is not a terminal).
fn progress(total: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} origins, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// The writer's extension decides the output format: `.csv` or `.parquet`.
fn output_format(path: &Path) -> Result<&'static str, OfflineError> {
    match path
        .extension()
        .map(|ext| ext.to_string_lossy().to_lowercase())
        .as_deref()
    {
        Some("csv") => Ok("csv"),
        Some("parquet" | "pq") => Ok("parquet"),
        _ => Err(OfflineError::Usage(format!(
            "--out {}: name it .csv or .parquet",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Profile;

    /// Origins parse from durations in whole steps; bad ones say why.
    #[test]
    fn origins_parse() {
        assert_eq!(Origins::parse("last", 300), Ok(Origins::Last));
        assert_eq!(Origins::parse("every:2h", 300), Ok(Origins::Every(24)));
        assert_eq!(Origins::parse("every:30m", 300), Ok(Origins::Every(6)));
        assert_eq!(Origins::parse("every:1d", 300), Ok(Origins::Every(288)));
        assert_eq!(Origins::parse("every:12", 300), Ok(Origins::Every(12)));
        assert!(
            Origins::parse("every:7m", 300)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            Origins::parse("hourly", 300)
                .unwrap_err()
                .contains("every:2h")
        );
    }

    /// Every-N origins count back from the last usable step and stop at the first.
    #[test]
    fn origins_count_back_from_the_end() {
        assert_eq!(Origins::Every(24).offsets(30, 100), vec![52, 76, 100]);
        assert_eq!(Origins::Every(24).offsets(101, 100), Vec::<usize>::new());
        assert_eq!(Origins::Last.offsets(0, 7), vec![7]);
    }

    /// A cut history is padded with NaN before the first step and ends at the origin.
    #[test]
    fn history_is_cut_at_the_origin() {
        let server = ServerSteps {
            server: "a".into(),
            profile: Profile::Generic,
            first_step: 10,
            steps: 5,
            metrics: vec![(Metric::CpuUserPct, vec![1.0, 2.0, 3.0, 4.0, 5.0])],
        };
        let history = history_at(&server, 2, 4, 300);
        assert_eq!(history.last_step_s, 12 * 300);
        let values = &history.series[0].1;
        assert!(values[0].is_nan());
        assert_eq!(&values[1..], &[1.0, 2.0, 3.0]);
    }
}
