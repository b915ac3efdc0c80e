//! Checks on payloads that more than one stage reads (the risk scorer and the alert router
//! both take samples, forecasts and risk scores): the server matches its subject, the
//! values can be used. Each refusal is a [`Reject`] with its [`RejectKind`] and a reason in
//! words for the dead-letter subject; the stage adds the subject's server.

use crate::actors::stage::Reject;
use crate::catalog::{Metric, Profile, is_valid_server_name};
use crate::subjects::Subjects;
use crate::wire::{Forecast, MetricSample, RejectKind, RiskScore};

fn check_server(subjects: &Subjects, subject: &str, server: &str) -> Result<(), Reject> {
    if !is_valid_server_name(server) {
        return Err(Reject::new(
            RejectKind::BadServer,
            format!("server name `{server}` is not letters, digits, `-` or `_`"),
        ));
    }
    if subjects.server_of(subject) != Some(server) {
        return Err(Reject::new(
            RejectKind::BadServer,
            format!("server `{server}` does not match subject `{subject}`"),
        ));
    }
    Ok(())
}

/// The profile a message names, or the one inferred from the server name when it names none.
///
/// # Errors
/// [`RejectKind::UnknownProfile`] for a name outside the vocabulary.
pub fn profile_of(server: &str, named: Option<&str>) -> Result<Profile, Reject> {
    match named {
        None | Some("") => Ok(Profile::infer(server)),
        Some(name) => name
            .parse()
            .map_err(|reason: String| Reject::new(RejectKind::UnknownProfile, reason)),
    }
}

/// Checks a sample the scorer will use: the server matches the subject, it has values, and
/// every catalog metric's value is finite and in range. Names outside the catalog are not
/// scored and not refused (the window keeper is the stage that polices the vocabulary).
///
/// # Errors
/// The first problem found.
pub fn check_sample(
    subjects: &Subjects,
    subject: &str,
    sample: &MetricSample,
) -> Result<Profile, Reject> {
    check_server(subjects, subject, &sample.server)?;
    if sample.metrics.is_empty() {
        return Err(Reject::new(RejectKind::Empty, "sample has no metrics"));
    }
    for (name, value) in &sample.metrics {
        let Some(metric) = Metric::from_name(name) else {
            continue;
        };
        if !value.is_finite() {
            return Err(Reject::new(
                RejectKind::NonFinite,
                format!("{name} is {value}"),
            ));
        }
        let (low, high) = metric.range();
        if !(low..=high).contains(value) {
            return Err(Reject::new(
                RejectKind::OutOfRange,
                format!("{name} = {value} is outside {low}–{high}"),
            ));
        }
    }
    profile_of(&sample.server, sample.profile.as_deref())
}

/// Checks a forecast: the server matches the subject, the profile is known, the step is
/// positive, step starts increase, and every metric is in the catalog with p10/p50/p90
/// series as long as `step_s` and finite.
///
/// # Errors
/// The first problem found.
pub fn check_forecast(
    subjects: &Subjects,
    subject: &str,
    forecast: &Forecast,
) -> Result<Profile, Reject> {
    check_server(subjects, subject, &forecast.server)?;
    let profile = profile_of(&forecast.server, Some(&forecast.profile))?;
    if forecast.step_seconds == 0 {
        return Err(Reject::new(RejectKind::BadContent, "step_seconds is 0"));
    }
    let steps = forecast.step_s.len();
    if steps == 0 {
        return Err(Reject::new(RejectKind::BadContent, "forecast has no steps"));
    }
    if forecast.step_s.windows(2).any(|pair| pair[1] <= pair[0]) {
        return Err(Reject::new(
            RejectKind::BadContent,
            "step_s is not strictly increasing",
        ));
    }
    if forecast.metrics.is_empty() {
        return Err(Reject::new(RejectKind::Empty, "forecast has no metrics"));
    }
    for (name, series) in &forecast.metrics {
        if Metric::from_name(name).is_none() {
            return Err(Reject::new(
                RejectKind::UnknownMetric,
                format!("`{name}` is not a metric"),
            ));
        }
        for (quantile, values) in [
            ("p10", &series.p10),
            ("p50", &series.p50),
            ("p90", &series.p90),
        ] {
            if values.len() != steps {
                return Err(Reject::new(
                    RejectKind::BadContent,
                    format!(
                        "{name}.{quantile} has {} values for {steps} steps",
                        values.len()
                    ),
                ));
            }
            if let Some(step) = values.iter().position(|value| !value.is_finite()) {
                return Err(Reject::new(
                    RejectKind::NonFinite,
                    format!("{name}.{quantile} is {} at step {step}", values[step]),
                ));
            }
        }
    }
    Ok(profile)
}

/// Checks a risk score for the alert router: the server matches the subject, the profile is
/// known, and the score is a finite number in 0–100.
///
/// # Errors
/// The first problem found.
pub fn check_risk(subjects: &Subjects, subject: &str, risk: &RiskScore) -> Result<Profile, Reject> {
    check_server(subjects, subject, &risk.server)?;
    let profile = profile_of(&risk.server, Some(&risk.profile))?;
    if !risk.score.is_finite() {
        return Err(Reject::new(
            RejectKind::NonFinite,
            format!("score is {}", risk.score),
        ));
    }
    if !(0.0..=100.0).contains(&risk.score) {
        return Err(Reject::new(
            RejectKind::OutOfRange,
            format!("score {} is outside 0–100", risk.score),
        ));
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SCHEMA_VERSION;
    use std::collections::BTreeMap;

    fn forecast() -> Forecast {
        crate::testing::forecast(4, &[("mem_used_pct", vec![50.0; 4])])
    }

    /// A good forecast passes; NaN, short series, unknown metrics and a subject mismatch are
    /// each refused with their kind and a reason naming the culprit.
    #[test]
    fn forecast_problems_are_named() {
        let subject = "fleetcast.forecasts.ppgen001";
        assert_eq!(
            check_forecast(&Subjects::default(), subject, &forecast()),
            Ok(Profile::Generic)
        );

        let mut nan = forecast();
        nan.metrics.get_mut("mem_used_pct").unwrap().p90[2] = f32::NAN;
        let error = check_forecast(&Subjects::default(), subject, &nan).unwrap_err();
        assert_eq!(error.kind, RejectKind::NonFinite);
        assert!(error.reason.contains("mem_used_pct.p90") && error.reason.contains("step 2"));

        let mut short = forecast();
        short.metrics.get_mut("mem_used_pct").unwrap().p10.pop();
        let error = check_forecast(&Subjects::default(), subject, &short).unwrap_err();
        assert_eq!(error.kind, RejectKind::BadContent);
        assert!(error.reason.contains("3 values for 4 steps"), "{error}");

        let mut unknown = forecast();
        let series = unknown.metrics["mem_used_pct"].clone();
        unknown.metrics.insert("gpu_pct".into(), series);
        assert_eq!(
            check_forecast(&Subjects::default(), subject, &unknown)
                .unwrap_err()
                .kind,
            RejectKind::UnknownMetric
        );

        let error = check_forecast(
            &Subjects::default(),
            "fleetcast.forecasts.ppgen002",
            &forecast(),
        )
        .unwrap_err();
        assert_eq!(error.kind, RejectKind::BadServer);

        let mut profile = forecast();
        profile.profile = "mainframe".into();
        assert_eq!(
            check_forecast(&Subjects::default(), subject, &profile)
                .unwrap_err()
                .kind,
            RejectKind::UnknownProfile
        );
    }

    /// Samples: NaN and out-of-range values are refused, unknown names ignored, the profile
    /// inferred from the name when absent.
    #[test]
    fn sample_checks() {
        let mut sample = MetricSample {
            v: SCHEMA_VERSION,
            server: "ppweb003".into(),
            ts_ms: 0,
            profile: None,
            metrics: BTreeMap::from([
                ("mem_used_pct".to_string(), 50.0),
                ("cascade_impact".to_string(), 0.5),
            ]),
        };
        let subject = "fleetcast.metrics.ppweb003";
        assert_eq!(
            check_sample(&Subjects::default(), subject, &sample),
            Ok(Profile::WebApi)
        );
        sample.metrics.insert("cpu_idle_pct".into(), f64::NAN);
        assert_eq!(
            check_sample(&Subjects::default(), subject, &sample)
                .unwrap_err()
                .kind,
            RejectKind::NonFinite
        );
        sample.metrics.insert("cpu_idle_pct".into(), 120.0);
        assert_eq!(
            check_sample(&Subjects::default(), subject, &sample)
                .unwrap_err()
                .kind,
            RejectKind::OutOfRange
        );
    }
}
