//! `fleetcast evaluate alerts` end to end on a small fleet: the real stages (window keeper,
//! predictor on the shipped model, risk scorer, alert router) beside the two baselines.

use fleetcast::evaluate::harness::baselines;
use fleetcast::evaluate::{Detector, EvaluateArgs, PipelineDetector, evaluate};
use fleetcast::settings::Settings;
use fleetcast::sim::Scenario;
use std::path::Path;

/// A healthy day of 12 servers: every detector (and the variant) gets a row, the pipeline
/// forecasts every job it makes and raises no critical alert, and the table names every
/// detector.
#[test]
fn a_healthy_day_is_scored_for_every_detector() {
    let mut settings = Settings::default();
    settings.predictor.model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tft-v3");
    let variant = {
        let mut variant = settings.clone();
        variant.alerts.predictive_quantile = fleetcast::settings::Quantile::P50;
        ("p50".to_string(), variant)
    };
    let pipeline = PipelineDetector::build(&settings, &[variant]).expect("the model loads");
    let mut detectors: Vec<Box<dyn Detector>> = vec![Box::new(pipeline)];
    let args = EvaluateArgs {
        days: 1,
        servers: 12,
        scenario: Scenario::Healthy,
        ..EvaluateArgs::new()
    };
    detectors.extend(baselines(&args));
    let report = evaluate(&args, &mut detectors).expect("the evaluation runs");
    let names: Vec<&str> = report
        .detectors
        .iter()
        .map(|d| d.detector.as_str())
        .collect();
    assert_eq!(
        names,
        ["fleetcast", "fleetcast p50", "threshold", "predict_linear"]
    );
    assert!(report.episodes.is_empty(), "healthy: {:?}", report.episodes);
    let summary = report.detectors[1].summary.as_deref().unwrap_or_default();
    assert!(
        summary.contains("forecasts (0 unforecastable)"),
        "{summary}"
    );
    for row in &report.detectors {
        assert_eq!(row.scores.incidents, 0);
    }
    let fleetcast = &report.detectors[0].scores;
    assert_eq!(fleetcast.false_per_server_day["critical"], 0.0);
    let table = report.table();
    assert!(table.contains("| fleetcast p50 |") && table.contains("| predict_linear |"));
}
