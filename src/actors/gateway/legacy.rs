//! The original's endpoints, in its shapes (catalog §5), served from the snapshot.
//!
//! Where a shape differs, and why:
//! - `/predictions/current`: a server's entry holds only the metrics it reports and that had
//!   enough history to forecast; a metric it does not report is **absent**, never zeros (the
//!   original filled every metric). Each metric also has `observed_steps`; `trend` is the p50's
//!   change per hour over the horizon; `current` is null for a metric forecast but not in the
//!   latest samples; quantiles are rounded to 0.001 of the metric's unit (the f32 digits beyond
//!   are noise and doubled the response). `alert` is on the one scale (20/40/70, the original API's own scale), and
//!   the summary's `degrading_count` counts `watch` (the original's summary used a second,
//!   disagreeing scale). There is a top-level `timestamp` (the original had none). The
//!   response is assembled from cached per-server parts: nothing runs the model.
//! - `/alerts/active`: one entry per open alert (the original listed one per exceeding forecast
//!   step); `threshold`, `steps_ahead` and `minutes_ahead` are computed from the alert's rule
//!   and the server's latest forecast; risk alerts have no steps ahead.
//! - `/status`: warm-up is per server (servers with a forecastable metric over servers
//!   seen), never a count of records in a shared buffer.
//! - `/historical/alerts`: the stream's events; `metrics_snapshot` and `caused_incident`
//!   (always 0 / never set in the original) are left out; `event_type` adds `raised`.

use super::auth::error;
use super::history::{self, parse_range};
use super::snapshot::ServerEntry;
use super::views::{self, HistoryEntry, badge, fleet_counts, profile_display, top_risks};
use super::{AppState, STAGE};
use crate::catalog::{METRIC_COUNT, Metric};
use crate::levels::Level;
use crate::wire::{self, Forecast, RiskScore};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// `GET /health`: always open; `status` is `healthy` while the bus is connected.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let connection = state.bus.client().connection_state();
    let connected = matches!(connection, async_nats::connection::State::Connected);
    HttpResponse::Ok().json(json!({
        "status": if connected { "healthy" } else { "degraded" },
        "service": "fleetcast-gateway",
        "running": true,
        "nats": connection.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /status`: the original's shape, warm-up from the window keeper's status.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings;
    let snapshot = state.read();
    let keeper = snapshot.stages.get("window_keeper");
    let (servers, ready, pct) = keeper.map_or((0, 0, 0.0), |status| {
        (status.servers, status.servers_ready, status.warmup_pct)
    });
    let warmed = servers > 0 && ready == servers;
    let message = match keeper {
        None => "no window keeper status yet".to_string(),
        Some(_) if warmed => format!("all {servers} servers have a forecastable metric"),
        Some(_) => format!(
            "{ready} of {servers} servers have {} observed steps of a metric",
            settings.window_keeper.min_observed_steps
        ),
    };
    let now = wire::now_ms();
    let stages: BTreeMap<&str, serde_json::Value> = snapshot
        .stages
        .iter()
        .map(|(name, status)| {
            (
                name.as_str(),
                json!({ "at_ms": status.at_ms, "age_seconds": (now - status.at_ms) as f64 / 1000.0 }),
            )
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "running": true,
        "tick_count": keeper.and_then(|status| status.counters.get("received").copied()).unwrap_or(0),
        "window_size": settings.window_keeper.context_steps,
        "warmup": {
            "is_warmed_up": warmed,
            "progress_percent": pct,
            "threshold": settings.window_keeper.min_observed_steps,
            "current_size": ready,
            "required_size": servers,
            "message": message,
        },
        "servers_tracked": snapshot.servers.len(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "stages": stages,
    }))
}

/// The cached parts of `/predictions/current`: per server its JSON (until the server
/// changes) and the whole response (until anything changes), plain and gzipped.
#[derive(Debug, Default)]
pub struct PredictionsCache {
    servers: Mutex<HashMap<String, (u64, Bytes)>>,
    whole: Mutex<Option<(u64, Bytes, Option<Bytes>)>>,
}

/// What one server's part is made of, cloned out of the snapshot (cheap: reference counts).
struct Parts {
    name: String,
    version: u64,
    profile: String,
    current: [f64; METRIC_COUNT],
    present: u16,
    forecast: Option<Arc<Forecast>>,
    risk: Option<Arc<RiskScore>>,
}

impl Parts {
    fn of(name: &str, entry: &ServerEntry) -> Parts {
        Parts {
            name: name.to_string(),
            version: entry.version,
            profile: entry.profile.clone(),
            current: entry.current,
            present: entry.present,
            forecast: entry.forecast.clone(),
            risk: entry.risk.clone(),
        }
    }

    fn current(&self, metric: Metric) -> Option<f64> {
        (self.present & (1 << metric.index()) != 0).then(|| self.current[metric.index()])
    }
}

/// Writes a series rounded to 0.001 of its unit: the model's f32 digits beyond that are noise,
/// and they doubled the response (3.6 MB for 90 servers) and halved what gzip saves.
fn rounded<S: serde::Serializer>(values: &&[f32], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(values.len()))?;
    for value in values.iter() {
        seq.serialize_element(&((value * 1000.0).round() / 1000.0))?;
    }
    seq.end()
}

#[derive(Serialize)]
struct LegacyMetric<'a> {
    #[serde(serialize_with = "rounded")]
    p50: &'a [f32],
    #[serde(serialize_with = "rounded")]
    p10: &'a [f32],
    #[serde(serialize_with = "rounded")]
    p90: &'a [f32],
    current: Option<f64>,
    trend: Option<f64>,
    observed_steps: u32,
}

#[derive(Serialize)]
struct Badge {
    level: &'static str,
    score: f64,
    color: &'static str,
    emoji: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct DisplayMetric {
    current: Option<f64>,
    predicted: Option<f64>,
    delta: Option<f64>,
    unit: &'static str,
    trend: &'static str,
}

#[derive(Serialize)]
struct LegacyServer<'a> {
    #[serde(flatten)]
    metrics: BTreeMap<&'a str, LegacyMetric<'a>>,
    risk_score: f64,
    profile: &'static str,
    profile_name: &'a str,
    alert: Badge,
    display_metrics: BTreeMap<&'static str, DisplayMetric>,
    forecast_origin_s: Option<i64>,
}

/// The mean of the first 6 p50 steps (the original's "predicted": the next 30 minutes).
fn near_p50(forecast: Option<&Forecast>, metric: Metric) -> Option<f64> {
    let p50 = &forecast?.metrics.get(metric.name())?.p50;
    let head = &p50[..p50.len().min(6)];
    (!head.is_empty()).then(|| head.iter().map(|&v| f64::from(v)).sum::<f64>() / head.len() as f64)
}

fn direction(current: Option<f64>, predicted: Option<f64>) -> &'static str {
    match (current, predicted) {
        (Some(current), Some(predicted)) => {
            let change = predicted - current;
            if change.abs() <= 0.05 * current.abs().max(1.0) {
                "stable"
            } else if change > 0.0 {
                "increasing"
            } else {
                "decreasing"
            }
        }
        _ => "unknown",
    }
}

/// One server's part: `"name":{...}`.
fn server_part(parts: &Parts, scale: &crate::levels::Scale) -> Bytes {
    let forecast = parts.forecast.as_deref();
    let hours = forecast.map_or(1.0, |f| {
        (f.step_s.len() as f64 * f64::from(f.step_seconds) / 3600.0).max(1e-9)
    });
    let metrics = forecast
        .map(|forecast| {
            forecast
                .metrics
                .iter()
                .map(|(name, series)| {
                    let trend = match (series.p50.first(), series.p50.last()) {
                        (Some(&first), Some(&last)) => Some(f64::from(last - first) / hours),
                        _ => None,
                    };
                    let current = Metric::from_name(name).and_then(|metric| parts.current(metric));
                    (
                        name.as_str(),
                        LegacyMetric {
                            p50: &series.p50,
                            p10: &series.p10,
                            p90: &series.p90,
                            current,
                            trend,
                            observed_steps: series.observed_steps,
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let score = parts.risk.as_ref().map_or(0.0, |risk| risk.score);
    let level = scale.level_of(score);
    let (color, emoji, label) = badge(level);
    let mut display = BTreeMap::new();
    let cpu_current = parts
        .current(Metric::CpuIdlePct)
        .map(|idle| 100.0 - idle)
        .or_else(|| parts.current(Metric::CpuUserPct));
    let cpu_predicted = near_p50(forecast, Metric::CpuIdlePct)
        .map(|idle| 100.0 - idle)
        .or_else(|| near_p50(forecast, Metric::CpuUserPct));
    let shown = [
        ("memory", Metric::MemUsedPct, "%"),
        ("iowait", Metric::CpuIowaitPct, "%"),
        ("swap", Metric::SwapUsedPct, "%"),
        ("load", Metric::LoadAverage, "load"),
        ("disk", Metric::DiskUsagePct, "%"),
        ("net_in", Metric::NetInMbS, "MB/s"),
        ("net_out", Metric::NetOutMbS, "MB/s"),
    ];
    let mut values = vec![("cpu", cpu_current, cpu_predicted, "%")];
    values.extend(shown.iter().map(|&(key, metric, unit)| {
        (key, parts.current(metric), near_p50(forecast, metric), unit)
    }));
    for (key, current, predicted, unit) in values {
        if current.is_none() && predicted.is_none() {
            continue;
        }
        display.insert(
            key,
            DisplayMetric {
                current,
                predicted,
                delta: current.zip(predicted).map(|(c, p)| p - c),
                unit,
                trend: direction(current, predicted),
            },
        );
    }
    let server = LegacyServer {
        metrics,
        risk_score: score,
        profile: profile_display(&parts.profile),
        profile_name: &parts.profile,
        alert: Badge {
            level: level.name(),
            score,
            color,
            emoji,
            label,
        },
        display_metrics: display,
        forecast_origin_s: forecast.map(|f| f.origin_s),
    };
    let mut out = Vec::with_capacity(40_000);
    serde_json::to_writer(&mut out, &parts.name).expect("a string serializes");
    out.push(b':');
    serde_json::to_writer(&mut out, &server).expect("a server part serializes");
    Bytes::from(out)
}

/// Whether the request accepts gzip.
pub fn accepts_gzip(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|part| part.trim().starts_with("gzip")))
}

/// Gzips `body` (fast level: the bodies are large and rebuilt often).
pub fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to memory");
    Bytes::from(encoder.finish().expect("writing to memory"))
}

/// A JSON response of `plain`, gzipped (`gzipped`, computed when `None`) when accepted.
pub fn json_body(request: &HttpRequest, plain: Bytes, gzipped: Option<Bytes>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/json")
        .insert_header((header::VARY, "Accept-Encoding"));
    if accepts_gzip(request) {
        let body = gzipped.unwrap_or_else(|| gzip(&plain));
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(body)
    } else {
        response.body(plain)
    }
}

/// `GET /predictions/current`: every server's forecast, risk and badge, the open alerts,
/// the fleet's incident probabilities, model metadata and the fleet summary.
pub async fn predictions_current(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let wants_gzip = accepts_gzip(&request);
    let cache = &state.predictions;
    let version = state.read().version;
    // Cloned out first: a guard in the `if let` would be held through its block, where the
    // gzip branch locks again (a worker deadlocked on its own lock).
    let whole = cache.whole.lock().expect("cache lock").clone();
    if let Some((cached, plain, gzipped)) = whole
        && cached == version
    {
        // A first gzip client of this version compresses it once for the next ones.
        let gzipped = match gzipped {
            None if wants_gzip => {
                let gzipped = gzip(&plain);
                if let Some(whole) = cache.whole.lock().expect("cache lock").as_mut()
                    && whole.0 == version
                {
                    whole.2 = Some(gzipped.clone());
                }
                Some(gzipped)
            }
            gzipped => gzipped,
        };
        return json_body(&request, plain, gzipped);
    }
    let started = std::time::Instant::now();
    let (version, parts, rest) = {
        let snapshot = state.read();
        let parts: Vec<Parts> = snapshot
            .servers
            .iter()
            .map(|(name, entry)| Parts::of(name, entry))
            .collect();
        (snapshot.version, parts, fleet_parts(&state, &snapshot))
    };
    let scale = state.settings.alerts.scale();
    let mut body = Vec::with_capacity(parts.len() * 40_000 + 4096);
    body.extend_from_slice(b"{\"predictions\":{");
    {
        let mut servers = cache.servers.lock().expect("cache lock");
        if servers.len() > parts.len() * 2 {
            let names: std::collections::HashSet<&str> =
                parts.iter().map(|part| part.name.as_str()).collect();
            servers.retain(|name, _| names.contains(name.as_str()));
        }
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            let fragment = match servers.get(&part.name) {
                Some((cached, fragment)) if *cached == part.version => fragment.clone(),
                _ => {
                    let fragment = server_part(part, &scale);
                    servers.insert(part.name.clone(), (part.version, fragment.clone()));
                    fragment
                }
            };
            body.extend_from_slice(&fragment);
        }
    }
    body.extend_from_slice(b"},");
    let mut rest = rest;
    rest["summary"]["risk_calculation_time"] = json!(started.elapsed().as_secs_f64() * 1000.0);
    let rest = serde_json::to_vec(&rest).expect("json serializes");
    // `rest` is an object: splice its members after the predictions.
    body.extend_from_slice(&rest[1..]);
    let plain = Bytes::from(body);
    let gzipped = wants_gzip.then(|| gzip(&plain));
    *cache.whole.lock().expect("cache lock") = Some((version, plain.clone(), gzipped.clone()));
    tracing::trace!(stage = STAGE, servers = parts.len(), "predictions rebuilt");
    json_body(&request, plain, gzipped)
}

/// The fleet-wide members of `/predictions/current`.
fn fleet_parts(state: &AppState, snapshot: &super::snapshot::Snapshot) -> serde_json::Value {
    let counts = fleet_counts(snapshot);
    let top = top_risks(snapshot, 20);
    let top_list = |n: usize| {
        top.iter()
            .take(n)
            .map(|(name, entry)| {
                json!({
                    "server": name,
                    "risk_score": entry.score(),
                    "level": views::level_of(&snapshot.scale, entry).name(),
                    "profile": profile_display(&entry.profile),
                })
            })
            .collect::<Vec<_>>()
    };
    let summary = snapshot.summary.as_deref();
    let newest = snapshot
        .servers
        .values()
        .filter_map(|entry| entry.forecast.as_deref())
        .max_by_key(|forecast| forecast.issued_ms);
    let polled = state
        .polled
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let model_dir = polled
        .services
        .iter()
        .find_map(|service| service.info.metadata.get("model_dir").cloned())
        .unwrap_or_default();
    json!({
        "alerts": views::active_alerts(&state.settings.alerts, snapshot),
        "environment": {
            "prob_30m": summary.map(|s| s.prob_30m),
            "prob_8h": summary.map(|s| s.prob_8h),
            "incident_probability_30m": summary.map(|s| s.prob_30m),
            "incident_probability_8h": summary.map(|s| s.prob_8h),
            "high_risk_servers": summary.map(|s| s.high_risk_servers),
            "total_servers": counts.servers,
            "fleet_health": summary.map_or("unknown", |s| s.fleet_health.as_str()),
            "at_ms": summary.map(|s| s.at_ms),
        },
        "metadata": {
            "model_type": "tft",
            "model": newest.map(|f| f.model.as_str()),
            "model_version": newest.map(|f| f.model_version.as_str()),
            "model_dir": model_dir,
            "prediction_time": newest.map(|f| views::rfc3339_ms(f.issued_ms)),
            "horizon_steps": newest.map_or(0, |f| f.step_s.len()),
            "step_seconds": snapshot.gate.step_seconds(),
            "input_points": state.settings.window_keeper.context_steps,
            "device": "cpu",
            "snapshot_version": snapshot.version,
        },
        "summary": {
            "total_servers": counts.servers,
            "critical_count": counts.counts[Level::Critical.name()],
            "warning_count": counts.counts[Level::Warning.name()],
            "watch_count": counts.counts[Level::Watch.name()],
            "degrading_count": counts.counts[Level::Watch.name()],
            "healthy_count": counts.counts[Level::Healthy.name()],
            "avg_risk_score": counts.avg_risk,
            "max_risk_score": counts.max_risk,
            "top_5_risks": top_list(5),
            "top_10_risks": top_list(10),
            "top_20_risks": top_list(20),
            "risk_calculation_time": 0.0,
        },
        "timestamp": views::rfc3339_ms(wire::now_ms()),
    })
}

/// `GET /alerts/active`: `{timestamp, count, alerts[]}` from the open alerts.
pub async fn alerts_active(state: web::Data<AppState>) -> HttpResponse {
    let alerts = views::active_alerts(&state.settings.alerts, &state.read());
    HttpResponse::Ok().json(json!({
        "timestamp": views::rfc3339_ms(wire::now_ms()),
        "count": alerts.len(),
        "alerts": alerts,
    }))
}

/// Query of the history endpoints.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// `30m`, `1h` (default), `8h`, `1d`, `1w`, `1M`, or `<n><unit>`.
    pub time_range: Option<String>,
    /// Only this server.
    pub server_name: Option<String>,
}

/// Reads the history a query asks for, or the 400/503 to answer.
pub async fn read_history(
    state: &AppState,
    range: Option<&str>,
    server: Option<&str>,
) -> Result<(String, history::History), HttpResponse> {
    let range_text = range.unwrap_or("1h").to_string();
    let range_ms =
        parse_range(&range_text).map_err(|reason| error(StatusCode::BAD_REQUEST, reason))?;
    if let Some(server) = server
        && !crate::catalog::is_valid_server_name(server)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("server_name `{server}` is not a server name (letters, digits, `-`, `_`)"),
        ));
    }
    let wall = wire::now_ms();
    let fleet_now = state.read().fleet_now_ms(wall);
    let read = history::read(
        &state.bus,
        fleet_now,
        wall,
        range_ms,
        server,
        state.settings.gateway.history_limit,
    )
    .await
    .map_err(|reason| error(StatusCode::SERVICE_UNAVAILABLE, reason))?;
    Ok((range_text, read))
}

/// `GET /historical/alerts?time_range=1h&server_name=`: `{count, alerts[]}` from the stream.
pub async fn historical_alerts(
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> HttpResponse {
    let (range, history) = match read_history(
        &state,
        query.time_range.as_deref(),
        query.server_name.as_deref(),
    )
    .await
    {
        Ok(read) => read,
        Err(response) => return response,
    };
    let alerts: Vec<HistoryEntry> = history
        .events
        .iter()
        .map(HistoryEntry::from_event)
        .collect();
    HttpResponse::Ok().json(json!({
        "count": alerts.len(),
        "alerts": alerts,
        "time_range": range,
        "from_ms": history.from_ms,
        "to_ms": history.to_ms,
        "truncated": history.truncated,
    }))
}

/// `GET /historical/export/alerts?time_range=1d`: `{csv_data, filename}` as the original.
pub async fn historical_export_alerts(
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> HttpResponse {
    let (range, history) = match read_history(
        &state,
        query.time_range.as_deref(),
        query.server_name.as_deref(),
    )
    .await
    {
        Ok(read) => read,
        Err(response) => return response,
    };
    let entries: Vec<HistoryEntry> = history
        .events
        .iter()
        .map(HistoryEntry::from_event)
        .collect();
    let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S");
    HttpResponse::Ok().json(json!({
        "csv_data": views::history_csv(&entries),
        "filename": format!("fleetcast_alerts_{range}_{stamp}.csv"),
        "count": entries.len(),
    }))
}
