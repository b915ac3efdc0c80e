//! `fleetcast backtest`: how the model would have done on a history file, next to
//! persistence ("nothing changes") and seasonal naive (the same time yesterday), on exactly the
//! same origins and points.
//!
//! Origins are every `--origins` steps (default 2 h), counted back from the last step whose
//! whole horizon is in the file, from the first step with a full day before it (so seasonal
//! naive is defined). A point (origin, step) counts for a series when its actual value, the
//! value a day earlier and a last observed value at the origin all exist. Per lead-time band
//! (0–1 h, 1–4 h, 4–8 h):
//! - **scaled MAE**: each series' mean absolute error of the median (or the baseline's point)
//!   divided by that series' seasonal-naive MAE over the whole file (the one-step MAE when the
//!   file is shorter than two days or seasonally flat), then averaged over series, so a series
//!   in bytes and one in percent weigh the same; below 1 beats "the same time yesterday",
//!   and model/persistence below 1 beats "nothing changes";
//! - **scaled pinball** of p10/p50/p90 (same divisor) and **p10–p90 coverage** (the share of
//!   points inside the interval; 0.8 is calibrated), for the model.

use super::{HistoryArgs, OfflineError, Origins, Prepared, SERVERS_PER_RUN, history_at, progress};
use crate::model::{QUANTILES, forecast_histories};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `fleetcast backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// The history and the model.
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Forecast origins: `every:DURATION` (e.g. every:2h, every:1h).
    #[arg(long, default_value = "every:2h")]
    pub origins: String,
    /// Also write the table and per-series scores as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Lead-time bands: name and upper bound in seconds (inclusive).
const BANDS: [(&str, i64); 3] = [("0-1 h", 3600), ("1-4 h", 4 * 3600), ("4-8 h", 8 * 3600)];

/// Sums over one series' points in one band.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BandSums {
    /// Points scored.
    pub points: u64,
    /// Σ |p50 − actual|.
    pub model_abs: f64,
    /// Σ |last observed − actual|.
    pub persistence_abs: f64,
    /// Σ |value a day earlier − actual|.
    pub seasonal_abs: f64,
    /// Σ mean pinball loss of p10/p50/p90.
    pub pinball: f64,
    /// Points with p10 ≤ actual ≤ p90.
    pub covered: u64,
}

/// One band's pooled scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandScore {
    /// `0-1 h`, `1-4 h` or `4-8 h`.
    pub band: String,
    /// Series with points in the band.
    pub series: usize,
    /// Points scored.
    pub points: u64,
    /// Scaled MAE of the model's median.
    pub model_mae: f64,
    /// Scaled MAE of persistence.
    pub persistence_mae: f64,
    /// Scaled MAE of seasonal naive.
    pub seasonal_mae: f64,
    /// Scaled pinball loss of the model's quantiles.
    pub model_pinball: f64,
    /// Share of points inside p10–p90.
    pub coverage: f64,
}

/// One series' scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesScore {
    /// Server.
    pub server: String,
    /// Metric.
    pub metric: String,
    /// The scale its errors are divided by.
    pub divisor: f64,
    /// Per band (same order as the bands), its sums.
    pub bands: Vec<BandSums>,
}

/// The whole backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Model name and version.
    pub model: String,
    /// The history file.
    pub input: String,
    /// Steps between origins.
    pub origin_every_steps: usize,
    /// Origins forecast.
    pub origins: usize,
    /// Pooled scores per band.
    pub bands: Vec<BandScore>,
    /// Per-series sums.
    pub series: Vec<SeriesScore>,
}

impl Report {
    /// The table `fleetcast backtest` prints.
    pub fn table(&self) -> String {
        let mut text = format!(
            "backtest of {} on {}: {} series, {} origins (every {} steps)\n\
             scaled MAE (below 1 beats seasonal naive); model/persistence below 1 beats \"nothing changes\"\n\n",
            self.model,
            self.input,
            self.series.len(),
            self.origins,
            self.origin_every_steps
        );
        text.push_str(&format!(
            "{:<7} {:>7} {:>9} {:>11} {:>9} {:>13} {:>9} {:>9}\n",
            "band", "model", "persist.", "seas.naive", "vs pers.", "pinball", "p10-p90", "points"
        ));
        for band in &self.bands {
            text.push_str(&format!(
                "{:<7} {:>7.3} {:>9.3} {:>11.3} {:>9.3} {:>13.3} {:>9.3} {:>9}\n",
                band.band,
                band.model_mae,
                band.persistence_mae,
                band.seasonal_mae,
                band.model_mae / band.persistence_mae,
                band.model_pinball,
                band.coverage,
                band.points
            ));
        }
        text
    }
}

/// Runs `fleetcast backtest` and returns its report (the caller prints the table).
///
/// # Errors
/// [`OfflineError`] for a bad flag, model, library, history file, too short a history, or an
/// unwritable JSON file.
pub fn run(args: &BacktestArgs, ort_library: &str) -> Result<Report, OfflineError> {
    let mut prepared = Prepared::open(&args.history, ort_library)?;
    let metadata = prepared.model.metadata().clone();
    let step_seconds = metadata.step_seconds;
    let every = match Origins::parse(&args.origins, step_seconds).map_err(OfflineError::Usage)? {
        Origins::Every(every) => every,
        Origins::Last => {
            return Err(OfflineError::Usage(
                "backtest --origins: use every:DURATION (a single origin scores too little)".into(),
            ));
        }
    };
    let context = prepared.context();
    let horizon = metadata.horizon as usize;
    let season = (86_400 / step_seconds) as usize;
    let cuts: Vec<(usize, usize)> = prepared
        .loaded
        .servers
        .iter()
        .enumerate()
        .flat_map(|(index, server)| {
            let last = server.steps.checked_sub(1 + horizon);
            last.map(|last| Origins::Every(every).offsets(season - 1, last))
                .unwrap_or_default()
                .into_iter()
                .map(move |origin| (index, origin))
        })
        .collect();
    if cuts.is_empty() {
        return Err(OfflineError::Usage(format!(
            "{}: a backtest needs at least a day of history plus the {}-step horizon in one server",
            args.history.input.display(),
            horizon
        )));
    }
    let bar = progress(cuts.len(), "backtesting");
    let mut sums: BTreeMap<(usize, String), Vec<BandSums>> = BTreeMap::new();
    let mut origins = 0;
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
        let forecasts = forecast_histories(&mut prepared.model, &histories, 0)?;
        for (&(index, origin), forecast) in chunk.iter().zip(forecasts) {
            let Ok(forecast) = forecast else { continue };
            origins += 1;
            let server = &prepared.loaded.servers[index];
            for (metric, quantiles) in &forecast.metrics {
                let Some((_, values)) = server.metrics.iter().find(|(m, _)| m.name() == metric)
                else {
                    continue;
                };
                let bands = sums
                    .entry((index, metric.clone()))
                    .or_insert_with(|| vec![BandSums::default(); BANDS.len()]);
                score_origin(values, origin, season, step_seconds, quantiles, bands);
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let series: Vec<SeriesScore> = sums
        .into_iter()
        .filter_map(|((index, metric), bands)| {
            let server = &prepared.loaded.servers[index];
            let values = &server.metrics.iter().find(|(m, _)| m.name() == metric)?.1;
            Some(SeriesScore {
                server: server.server.clone(),
                metric,
                divisor: divisor(values, season)?,
                bands,
            })
        })
        .collect();
    let report = Report {
        model: metadata.label(),
        input: args.history.input.display().to_string(),
        origin_every_steps: every,
        origins,
        bands: pool(&series),
        series,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("a report serialises");
        std::fs::write(path, text).map_err(|source| OfflineError::Write {
            path: path.clone(),
            source: Box::new(source),
        })?;
    }
    Ok(report)
}

/// Adds one origin's points of one series to its band sums.
fn score_origin(
    values: &[f32],
    origin: usize,
    season: usize,
    step_seconds: u32,
    quantiles: &crate::wire::QuantileSeries,
    bands: &mut [BandSums],
) {
    let Some(last) = values[..=origin]
        .iter()
        .rev()
        .find(|value| value.is_finite())
    else {
        return;
    };
    for k in 1..=quantiles.p50.len() {
        let target = origin + k;
        let yesterday = target.checked_sub(season).and_then(|at| values.get(at));
        let (Some(&actual), Some(&yesterday)) = (values.get(target), yesterday) else {
            continue;
        };
        if !actual.is_finite() || !yesterday.is_finite() {
            continue;
        }
        let lead = k as i64 * i64::from(step_seconds);
        let Some(band) = BANDS.iter().position(|&(_, upto)| lead <= upto) else {
            continue;
        };
        let (actual, p10, p50, p90) = (
            f64::from(actual),
            f64::from(quantiles.p10[k - 1]),
            f64::from(quantiles.p50[k - 1]),
            f64::from(quantiles.p90[k - 1]),
        );
        let sums = &mut bands[band];
        sums.points += 1;
        sums.model_abs += (p50 - actual).abs();
        sums.persistence_abs += (f64::from(*last) - actual).abs();
        sums.seasonal_abs += (f64::from(yesterday) - actual).abs();
        sums.pinball += [p10, p50, p90]
            .iter()
            .zip(QUANTILES)
            .map(|(&predicted, q)| pinball(q, actual - predicted))
            .sum::<f64>()
            / QUANTILES.len() as f64;
        sums.covered += u64::from(p10 <= actual && actual <= p90);
    }
}

/// The pinball (quantile) loss of an error `actual − predicted` at quantile `q`.
fn pinball(q: f64, error: f64) -> f64 {
    (q * error).max((q - 1.0) * error)
}

/// A series' error scale: its seasonal-naive MAE, else its one-step MAE; `None` for a flat
/// or one-value series (nothing to scale by).
fn divisor(values: &[f32], season: usize) -> Option<f64> {
    let lagged_mae = |lag: usize| -> Option<f64> {
        let (sum, count) = values
            .iter()
            .zip(values.iter().skip(lag))
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .fold((0.0, 0_u64), |(sum, count), (a, b)| {
                (sum + f64::from((b - a).abs()), count + 1)
            });
        (count > 0 && sum > 0.0).then(|| sum / count as f64)
    };
    lagged_mae(season).or_else(|| lagged_mae(1))
}

/// Per band: errors scaled per series then averaged over series; coverage over all points.
fn pool(series: &[SeriesScore]) -> Vec<BandScore> {
    BANDS
        .iter()
        .enumerate()
        .map(|(band, (name, _))| {
            let scored: Vec<(&BandSums, f64)> = series
                .iter()
                .map(|one| (&one.bands[band], one.divisor))
                .filter(|(sums, _)| sums.points > 0)
                .collect();
            let mean = |pick: fn(&BandSums) -> f64| {
                scored
                    .iter()
                    .map(|(sums, divisor)| pick(sums) / sums.points as f64 / divisor)
                    .sum::<f64>()
                    / scored.len().max(1) as f64
            };
            let points: u64 = scored.iter().map(|(sums, _)| sums.points).sum();
            let covered: u64 = scored.iter().map(|(sums, _)| sums.covered).sum();
            BandScore {
                band: (*name).to_string(),
                series: scored.len(),
                points,
                model_mae: mean(|sums| sums.model_abs),
                persistence_mae: mean(|sums| sums.persistence_abs),
                seasonal_mae: mean(|sums| sums.seasonal_abs),
                model_pinball: mean(|sums| sums.pinball),
                coverage: covered as f64 / points.max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::QuantileSeries;

    /// A hand-made origin: each method's error lands in the right band, with the right
    /// persistence value (the last observed one) and coverage.
    #[test]
    fn one_origin_is_scored_by_hand() {
        // season of 4 steps; origin at index 5; actual values from index 6 on
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN, 7.0, 8.0];
        let quantiles = QuantileSeries {
            p10: vec![6.0, 9.0],
            p50: vec![7.5, 9.5],
            p90: vec![8.0, 10.0],
            observed_steps: 5,
        };
        let mut bands = vec![BandSums::default(); 3];
        // steps of 1800 s: step 1 (0.5 h) is band 0, step 2 (1 h) too
        score_origin(&values, 5, 4, 1800, &quantiles, &mut bands);
        let sums = &bands[0];
        assert_eq!(sums.points, 2);
        assert_eq!(sums.model_abs, 0.5 + 1.5);
        assert_eq!(sums.persistence_abs, 2.0 + 3.0, "last observed is 5");
        assert_eq!(sums.seasonal_abs, (7.0 - 3.0) + (8.0 - 4.0));
        assert_eq!(sums.covered, 1);
        // pinball at 7.0 for (6, 7.5, 8): (0.1·1 + 0.5·0.5 + 0.1·1) / 3
        let first = (0.1 * 1.0 + 0.5 * 0.5 + 0.1 * 1.0) / 3.0;
        let second = (0.9 * 1.0 + 0.5 * 1.5 + 0.1 * 2.0) / 3.0;
        assert!((sums.pinball - first - second).abs() < 1e-12);
    }

    /// The divisor is the seasonal MAE, falling back to one-step MAE, none for a flat series.
    #[test]
    fn divisors() {
        assert_eq!(divisor(&[1.0, 2.0, 3.0, 5.0], 2), Some(2.5));
        assert_eq!(
            divisor(&[1.0, 2.0, 1.0, 2.0], 2),
            Some(1.0),
            "seasonally flat"
        );
        assert_eq!(divisor(&[4.0, 4.0, 4.0], 2), None);
    }

    /// Pooling averages scaled errors over series and coverage over points.
    #[test]
    fn pooling_scales_per_series() {
        let series = |divisor: f64, points: u64, model_abs: f64, covered: u64| SeriesScore {
            server: "s".into(),
            metric: "m".into(),
            divisor,
            bands: vec![
                BandSums {
                    points,
                    model_abs,
                    persistence_abs: model_abs * 2.0,
                    seasonal_abs: model_abs,
                    pinball: 0.0,
                    covered,
                },
                BandSums::default(),
                BandSums::default(),
            ],
        };
        let pooled = pool(&[series(1.0, 2, 2.0, 2), series(10.0, 2, 60.0, 0)]);
        // per series MAE / divisor: 1.0 and 3.0
        assert_eq!(pooled[0].model_mae, 2.0);
        assert_eq!(pooled[0].persistence_mae, 4.0);
        assert_eq!(pooled[0].coverage, 0.5);
        assert_eq!(pooled[1].points, 0);
    }
}
