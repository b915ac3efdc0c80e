//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Every name starts with `fleetcast_`; counters end in `_total`; units are in the names
//! (`_seconds`, `_percent`, `_bytes`, `_messages`); server, metric, stage and the like are
//! labels. Families:
//!
//! - **per server**: `fleetcast_server_risk_score` (0–100), `fleetcast_server_risk_level`
//!   (0 healthy … 3 critical), `fleetcast_server_open_alerts`; for each alerting metric
//!   (`[alerts.metrics]`) the forecast at +30 min (`fleetcast_server_forecast_<unit>`, labels
//!   `quantile` p50/p90 and `ahead`) and its peak over the horizon
//!   (`fleetcast_server_forecast_peak_<unit>`, label `horizon`);
//! - **fleet**: servers per level, incident probabilities, open alerts, warm-up;
//! - **stages**: every counter a stage reports, as `fleetcast_<stage>_<counter>_total`
//!   (label `instance`; a counter `a.b` becomes `fleetcast_<stage>_a_by_kind_total{kind="b"}`),
//!   read from `$SRV.STATS` where the stage is a NATS micro service (the `data` of its
//!   endpoints), else from its `status.<stage>` messages; the micro services' own request
//!   counts as `fleetcast_service_*`;
//! - **JetStream**: each stream's messages and bytes, each consumer's pending (lag),
//!   ack-pending and redelivered messages;
//! - **the gateway itself**: messages taken by kind, HTTP requests by route and status, push
//!   clients and events, feed outcomes.
//!
//! The stages' and JetStream's numbers come from [`super::poller`], every
//! `gateway.poll_interval_seconds`, so a scrape never waits on the bus.

use super::AppState;
use super::views::level_of;
use crate::catalog::{Metric, MetricKind};
use crate::wire;
use actix_web::{HttpResponse, web};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One metric family being written.
#[derive(Debug, Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

/// Families gathered by name, written grouped (one `# TYPE` each) and sorted.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

/// Escapes a label value (backslash, double quote, newline).
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric-name fragment: letters, digits and `_` only.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Exposition {
    /// Adds one sample to family `name` (created with `help` and `kind` on first use).
    pub fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            });
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    rendered.push(',');
                }
                let _ = write!(rendered, "{key}=\"{}\"", escape(value));
            }
            rendered.push('}');
        }
        family.samples.push((rendered, value));
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.families.len() * 256);
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, value) in &family.samples {
                let _ = if value.is_finite() {
                    writeln!(out, "{name}{labels} {value}")
                } else if value.is_nan() {
                    writeln!(out, "{name}{labels} NaN")
                } else if *value > 0.0 {
                    writeln!(out, "{name}{labels} +Inf")
                } else {
                    writeln!(out, "{name}{labels} -Inf")
                };
            }
        }
        out
    }
}

/// The unit suffix of a metric's family.
fn unit_suffix(metric: Metric) -> &'static str {
    match metric.kind() {
        MetricKind::Percent => "percent",
        MetricKind::Rate => "megabytes_per_second",
        MetricKind::Count => "sockets",
        MetricKind::Load => "load",
        MetricKind::Days => "days",
    }
}

/// A human duration label: `30m`, `8h`, `90s`.
fn duration_label(seconds: i64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Adds a stage's counters: `fleetcast_<stage>_<counter>_total{instance}`.
fn add_stage_counters(
    out: &mut Exposition,
    stage: &str,
    instance: &str,
    counters: &BTreeMap<String, f64>,
) {
    let stage = sanitize(stage);
    for (name, value) in counters {
        let (base, kind) = match name.split_once('.') {
            Some((base, kind)) => (format!("{}_by_kind", sanitize(base)), Some(kind)),
            None => (sanitize(name), None),
        };
        let gauge = base.contains("lag") || base.ends_with("_pct") || base.contains("pending");
        let family = if gauge {
            format!("fleetcast_{stage}_{base}")
        } else {
            format!("fleetcast_{stage}_{base}_total")
        };
        let help = if gauge {
            "a stage gauge, as the stage reports it"
        } else {
            "a stage counter, as the stage reports it"
        };
        let mut labels = vec![("instance", instance)];
        if let Some(kind) = kind {
            labels.push(("kind", kind));
        }
        out.add(
            &family,
            help,
            if gauge { "gauge" } else { "counter" },
            &labels,
            *value,
        );
    }
}

/// Numeric counters in a stats `data` value: its `counters` map, else its numeric fields.
fn counters_of(data: &serde_json::Value) -> BTreeMap<String, f64> {
    let source = data.get("counters").unwrap_or(data);
    source
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the whole exposition.
pub fn exposition(state: &AppState) -> Exposition {
    let mut out = Exposition::default();
    let settings = &state.settings;
    let polled = state
        .polled
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut stages_from_services = std::collections::BTreeSet::new();
    for service in &polled.services {
        let info = &service.info;
        let stage = info
            .metadata
            .get("stage")
            .cloned()
            .unwrap_or_else(|| info.name.trim_start_matches("fleetcast-").replace('-', "_"));
        let instance = info
            .metadata
            .get("instance")
            .cloned()
            .unwrap_or_else(|| info.id.clone());
        out.add(
            "fleetcast_service_info",
            "a running micro service instance (1)",
            "gauge",
            &[
                ("service", &info.name),
                ("instance", &instance),
                ("version", &info.version),
            ],
            1.0,
        );
        for endpoint in &service.endpoints {
            let labels = [
                ("service", info.name.as_str()),
                ("instance", instance.as_str()),
                ("endpoint", endpoint.name.as_str()),
            ];
            out.add(
                "fleetcast_service_requests_total",
                "requests an endpoint handled ($SRV.STATS)",
                "counter",
                &labels,
                endpoint.requests as f64,
            );
            out.add(
                "fleetcast_service_errors_total",
                "requests an endpoint failed ($SRV.STATS)",
                "counter",
                &labels,
                endpoint.errors as f64,
            );
            out.add(
                "fleetcast_service_processing_seconds_total",
                "time an endpoint spent on requests ($SRV.STATS)",
                "counter",
                &labels,
                endpoint.processing.as_secs_f64(),
            );
            if let Some(data) = &endpoint.data {
                let counters = counters_of(data);
                if !counters.is_empty() {
                    stages_from_services.insert(stage.clone());
                    add_stage_counters(&mut out, &stage, &instance, &counters);
                }
            }
        }
    }
    for (name, messages, bytes) in &polled.streams {
        out.add(
            "fleetcast_jetstream_stream_messages",
            "messages a stream holds",
            "gauge",
            &[("stream", name)],
            *messages as f64,
        );
        out.add(
            "fleetcast_jetstream_stream_bytes",
            "bytes a stream holds",
            "gauge",
            &[("stream", name)],
            *bytes as f64,
        );
    }
    for consumer in &polled.consumers {
        let labels = [
            ("stream", consumer.stream.as_str()),
            ("consumer", consumer.consumer.as_str()),
        ];
        out.add(
            "fleetcast_jetstream_consumer_pending_messages",
            "messages not yet delivered to a consumer (its lag)",
            "gauge",
            &labels,
            consumer.pending as f64,
        );
        out.add(
            "fleetcast_jetstream_consumer_ack_pending_messages",
            "messages delivered but not acknowledged",
            "gauge",
            &labels,
            consumer.ack_pending as f64,
        );
        out.add(
            "fleetcast_jetstream_consumer_redelivered_messages",
            "messages redelivered and not yet acknowledged",
            "gauge",
            &labels,
            consumer.redelivered as f64,
        );
    }
    if polled.at_ms > 0 {
        out.add(
            "fleetcast_gateway_poll_age_seconds",
            "seconds since the stages and jetstream were last read",
            "gauge",
            &[],
            (wire::now_ms() - polled.at_ms) as f64 / 1000.0,
        );
    }
    out.add(
        "fleetcast_gateway_poll_errors_total",
        "polls of the stages or jetstream that failed",
        "counter",
        &[],
        polled.errors as f64,
    );

    let snapshot = state.read();
    for (stage, status) in &snapshot.stages {
        if stages_from_services.contains(stage) {
            continue;
        }
        let counters = status
            .counters
            .iter()
            .map(|(name, value)| (name.clone(), *value as f64))
            .collect();
        add_stage_counters(&mut out, stage, "status", &counters);
        if stage == "window_keeper" {
            out.add(
                "fleetcast_fleet_warmup_percent",
                "fleet warm-up: mean progress of servers to their first forecast",
                "gauge",
                &[],
                status.warmup_pct,
            );
            out.add(
                "fleetcast_fleet_servers_ready",
                "servers with a forecastable metric",
                "gauge",
                &[],
                f64::from(status.servers_ready),
            );
        }
    }
    let received = &snapshot.received;
    for (kind, count) in [
        ("sample", received.samples),
        ("forecast", received.forecasts),
        ("risk", received.risk),
        ("alert", received.alerts),
        ("summary", received.summaries),
        ("status", received.statuses),
    ] {
        out.add(
            "fleetcast_gateway_messages_total",
            "messages the gateway took, by kind",
            "counter",
            &[("kind", kind)],
            count as f64,
        );
    }
    out.add(
        "fleetcast_gateway_samples_refused_total",
        "samples the window keeper's rule refuses (not shown)",
        "counter",
        &[],
        received.samples_refused as f64,
    );
    out.add(
        "fleetcast_gateway_messages_skipped_total",
        "messages that did not decode",
        "counter",
        &[],
        received.skipped as f64,
    );

    let counts = super::views::fleet_counts(&snapshot);
    out.add(
        "fleetcast_fleet_servers",
        "servers known",
        "gauge",
        &[],
        counts.servers as f64,
    );
    for (level, count) in &counts.counts {
        out.add(
            "fleetcast_fleet_servers_by_level",
            "servers at each level of the one scale",
            "gauge",
            &[("level", level)],
            *count as f64,
        );
    }
    for severity in ["watch", "warning", "critical"] {
        let open = counts.open_alerts.get(severity).copied().unwrap_or(0);
        out.add(
            "fleetcast_fleet_open_alerts",
            "open alerts by severity",
            "gauge",
            &[("severity", severity)],
            open as f64,
        );
    }
    if let Some(summary) = &snapshot.summary {
        out.add(
            "fleetcast_fleet_incident_probability_ratio",
            "mean per-server incident probability (0-1)",
            "gauge",
            &[("within", "30m")],
            summary.prob_30m,
        );
        out.add(
            "fleetcast_fleet_incident_probability_ratio",
            "mean per-server incident probability (0-1)",
            "gauge",
            &[("within", "8h")],
            summary.prob_8h,
        );
    }
    let alerting: Vec<Metric> = settings
        .alerts
        .metrics
        .keys()
        .filter_map(|name| Metric::from_name(name))
        .collect();
    let step = snapshot.gate.step_seconds().max(1);
    let ahead_index = ((1800 + step - 1) / step - 1).max(0) as usize;
    for (server, entry) in &snapshot.servers {
        let profile = entry.profile.as_str();
        if let Some(risk) = &entry.risk {
            out.add(
                "fleetcast_server_risk_score",
                "a server's risk score, 0-100",
                "gauge",
                &[("server", server), ("profile", profile)],
                risk.score,
            );
            out.add(
                "fleetcast_server_risk_level",
                "a server's level: 0 healthy, 1 watch, 2 warning, 3 critical",
                "gauge",
                &[("server", server), ("profile", profile)],
                level_of(&snapshot.scale, entry).rank() as f64,
            );
        }
        out.add(
            "fleetcast_server_open_alerts",
            "a server's open alerts",
            "gauge",
            &[("server", server)],
            entry.alerts.len() as f64,
        );
        let Some(forecast) = &entry.forecast else {
            continue;
        };
        let horizon =
            duration_label(forecast.step_s.len() as i64 * i64::from(forecast.step_seconds));
        let ahead = duration_label((ahead_index as i64 + 1) * i64::from(forecast.step_seconds));
        for metric in &alerting {
            let Some(series) = forecast.metrics.get(metric.name()) else {
                continue;
            };
            let unit = unit_suffix(*metric);
            for (quantile, values) in [("p50", &series.p50), ("p90", &series.p90)] {
                let labels = [
                    ("server", server.as_str()),
                    ("metric", metric.name()),
                    ("quantile", quantile),
                ];
                if let Some(value) = values.get(ahead_index.min(values.len().saturating_sub(1))) {
                    let mut with_ahead = labels.to_vec();
                    with_ahead.push(("ahead", &ahead));
                    out.add(
                        &format!("fleetcast_server_forecast_{unit}"),
                        "a server's forecast of an alerting metric, ahead of its last step",
                        "gauge",
                        &with_ahead,
                        f64::from(*value),
                    );
                }
                if let Some(peak) = values.iter().copied().reduce(f32::max) {
                    let mut with_horizon = labels.to_vec();
                    with_horizon.push(("horizon", &horizon));
                    out.add(
                        &format!("fleetcast_server_forecast_peak_{unit}"),
                        "the highest forecast of an alerting metric over the horizon",
                        "gauge",
                        &with_horizon,
                        f64::from(peak),
                    );
                }
            }
        }
    }
    drop(snapshot);

    for ((route, status), (requests, seconds)) in state.requests.snapshot() {
        let status = status.to_string();
        let labels = [("route", route.as_str()), ("status", status.as_str())];
        out.add(
            "fleetcast_gateway_http_requests_total",
            "http requests served, by route and status",
            "counter",
            &labels,
            requests as f64,
        );
        out.add(
            "fleetcast_gateway_http_request_seconds_total",
            "time spent serving http requests, by route and status",
            "counter",
            &labels,
            seconds,
        );
    }
    out.add(
        "fleetcast_gateway_push_clients",
        "server-sent-event clients connected",
        "gauge",
        &[],
        state.push.clients() as f64,
    );
    out.add(
        "fleetcast_gateway_push_events_total",
        "push events sent",
        "counter",
        &[],
        state.push.sent() as f64,
    );
    let counters = state.stage.counters().snapshot();
    out.add(
        "fleetcast_gateway_feed_requests_total",
        "POST /feed/data requests",
        "counter",
        &[],
        counters.extra("feed_posts") as f64,
    );
    out.add(
        "fleetcast_gateway_feed_rate_limited_total",
        "POST /feed/data requests refused by the rate limit",
        "counter",
        &[],
        counters.extra("rate_limited") as f64,
    );
    for (outcome, count) in [
        ("accepted", counters.accepted),
        ("refused", counters.rejected),
        ("not_stored", counters.extra("not_stored")),
    ] {
        out.add(
            "fleetcast_gateway_feed_records_total",
            "POST /feed/data records by outcome",
            "counter",
            &[("outcome", outcome)],
            count as f64,
        );
    }
    out
}

/// `GET /metrics`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = exposition(&state).render();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Families are grouped under one HELP/TYPE, label values escaped, names sanitized.
    #[test]
    fn families_are_grouped_and_escaped() {
        let mut out = Exposition::default();
        out.add(
            "fleetcast_b",
            "b",
            "gauge",
            &[("server", "a\"b\\c\nd")],
            1.5,
        );
        out.add("fleetcast_a_total", "a", "counter", &[], 2.0);
        out.add("fleetcast_b", "b", "gauge", &[("server", "x")], f64::NAN);
        let text = out.render();
        assert_eq!(
            text,
            "# HELP fleetcast_a_total a\n# TYPE fleetcast_a_total counter\nfleetcast_a_total 2\n\
             # HELP fleetcast_b b\n# TYPE fleetcast_b gauge\nfleetcast_b{server=\"a\\\"b\\\\c\\nd\"} 1.5\nfleetcast_b{server=\"x\"} NaN\n"
        );
        assert_eq!(sanitize("rejected-Out.of"), "rejected_out_of");
        assert_eq!(duration_label(1800), "30m");
        assert_eq!(duration_label(28_800), "8h");
    }

    /// A stage's counters become `_total` families, `a.b` a `kind` label, lag a gauge.
    #[test]
    fn stage_counters_become_families() {
        let mut out = Exposition::default();
        let counters = BTreeMap::from([
            ("received".to_string(), 5.0),
            ("rejected.out_of_range".to_string(), 2.0),
            ("consumer_lag".to_string(), 7.0),
        ]);
        add_stage_counters(&mut out, "window_keeper", "i1", &counters);
        let text = out.render();
        assert!(
            text.contains("fleetcast_window_keeper_received_total{instance=\"i1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("fleetcast_window_keeper_rejected_by_kind_total{instance=\"i1\",kind=\"out_of_range\"} 2\n"), "{text}");
        assert!(
            text.contains("# TYPE fleetcast_window_keeper_consumer_lag gauge\n"),
            "{text}"
        );
    }
}
