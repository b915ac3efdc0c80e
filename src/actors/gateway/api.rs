//! fleetcast's own API under `/api/v1/` (documented in `openapi.json`, served at
//! `/api/v1/openapi.json`): servers (filtered and sorted), one server's page, alerts (active
//! and history, JSON or CSV), the fleet summary and heatmap, the scenario switch, the model in
//! service, the stages, and the push events.

use super::auth::error;
use super::legacy::{json_body, read_history};
use super::views::{self, HistoryEntry, fleet_counts, is_profile, server_row, top_risks};
use super::{AppState, STAGE};
use crate::levels::Level;
use crate::sim::Scenario;
use crate::wire::{self, SCHEMA_VERSION, ScenarioReply, ScenarioRequest};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Any other path: 404 with a JSON error naming it.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {} (see /api/v1/openapi.json)",
            request.method(),
            request.path()
        ),
    )
}

/// Query of `/api/v1/servers`.
#[derive(Debug, Deserialize)]
pub struct ServersQuery {
    /// Only this profile.
    pub profile: Option<String>,
    /// Only this level.
    pub level: Option<String>,
    /// `risk` (default: highest first) or `name`.
    pub sort: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// `GET /api/v1/servers?profile=&level=&sort=risk|name&limit=`.
pub async fn servers(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ServersQuery>,
) -> HttpResponse {
    if let Some(profile) = &query.profile
        && !is_profile(profile)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "profile `{profile}` is not one of the 7 profiles (ml_compute, database, web_api, conductor_mgmt, data_ingest, risk_analytics, generic)"
            ),
        );
    }
    let level = match query.level.as_deref().map(str::parse::<Level>) {
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "level `{}` is not one of healthy, watch, warning, critical",
                    query.level.as_deref().unwrap_or_default()
                ),
            );
        }
        Some(Ok(level)) => Some(level),
        None => None,
    };
    let by_name = match query.sort.as_deref() {
        None | Some("risk") => false,
        Some("name") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("sort `{other}` is not `risk` or `name`"),
            );
        }
    };
    let body = {
        let snapshot = state.read();
        let mut rows: Vec<_> = snapshot
            .servers
            .iter()
            .filter(|(_, entry)| query.profile.as_ref().is_none_or(|p| &entry.profile == p))
            .filter(|(_, entry)| {
                level.is_none_or(|level| views::level_of(&snapshot.scale, entry) == level)
            })
            .map(|(name, entry)| server_row(&snapshot.scale, name, entry))
            .collect();
        if !by_name {
            rows.sort_by(|a, b| {
                b.score
                    .unwrap_or(-1.0)
                    .total_cmp(&a.score.unwrap_or(-1.0))
                    .then(a.server.cmp(b.server))
            });
        }
        let matched = rows.len();
        rows.truncate(query.limit.unwrap_or(usize::MAX));
        #[derive(serde::Serialize)]
        struct Page<'a> {
            version: u64,
            total: usize,
            matched: usize,
            count: usize,
            servers: Vec<views::ServerRow<'a>>,
        }
        serde_json::to_vec(&Page {
            version: snapshot.version,
            total: snapshot.servers.len(),
            matched,
            count: rows.len(),
            servers: rows,
        })
        .expect("json serializes")
    };
    json_body(&request, Bytes::from(body), None)
}

/// `GET /api/v1/servers/{server}`.
pub async fn server(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    let snapshot = state.read();
    match snapshot.servers.get(&name) {
        Some(entry) => HttpResponse::Ok().json(views::server_detail(&snapshot, &name, entry)),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no server `{name}` (none has reported under that name)"),
        ),
    }
}

/// Query of `/api/v1/alerts`.
#[derive(Debug, Deserialize)]
pub struct AlertsQuery {
    /// `active` (default) or `history`.
    pub state: Option<String>,
    /// History range: `30m`, `1h` (default), `8h`, `1d`, `1w`, `1M`.
    pub time_range: Option<String>,
    /// Only this server.
    pub server: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

fn csv_response(csv: String, filename: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(csv)
}

/// `GET /api/v1/alerts?state=active|history&time_range=&server=&format=json|csv`.
pub async fn alerts(state: web::Data<AppState>, query: web::Query<AlertsQuery>) -> HttpResponse {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format `{other}` is not `json` or `csv`"),
            );
        }
    };
    match query.state.as_deref() {
        None | Some("active") => {
            let mut alerts = views::active_alerts(&state.settings.alerts, &state.read());
            if let Some(server) = &query.server {
                alerts.retain(|alert| alert["server"] == *server);
            }
            if csv {
                let mut writer = csv::Writer::from_writer(Vec::new());
                let columns = [
                    "id",
                    "server",
                    "profile",
                    "metric",
                    "severity",
                    "predicted_value",
                    "threshold",
                    "minutes_ahead",
                    "opened_ms",
                    "reason",
                ];
                let _ = writer.write_record(columns);
                for alert in &alerts {
                    let cells: Vec<String> = columns
                        .iter()
                        .map(|column| match &alert[*column] {
                            serde_json::Value::String(text) => text.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect();
                    let _ = writer.write_record(cells);
                }
                let text =
                    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default();
                return csv_response(text, "fleetcast_active_alerts.csv");
            }
            HttpResponse::Ok()
                .json(json!({ "state": "active", "count": alerts.len(), "alerts": alerts }))
        }
        Some("history") => {
            let (range, history) =
                match read_history(&state, query.time_range.as_deref(), query.server.as_deref())
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
            if csv {
                return csv_response(
                    views::history_csv(&entries),
                    &format!("fleetcast_alerts_{range}.csv"),
                );
            }
            HttpResponse::Ok().json(json!({
                "state": "history",
                "time_range": range,
                "from_ms": history.from_ms,
                "to_ms": history.to_ms,
                "truncated": history.truncated,
                "count": entries.len(),
                "alerts": entries,
            }))
        }
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("state `{other}` is not `active` or `history`"),
        ),
    }
}

/// Query of `/api/v1/summary`.
#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    /// Include every server's risk grouped by profile.
    pub heatmap: Option<bool>,
}

/// `GET /api/v1/summary?heatmap=true`: counts per level, incident probabilities, fleet
/// health, warm-up, open alerts, top risks, per-profile counts, and (asked) the heatmap.
pub async fn summary(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<SummaryQuery>,
) -> HttpResponse {
    let body = {
        let snapshot = state.read();
        let counts = fleet_counts(&snapshot);
        let top: Vec<_> = top_risks(&snapshot, 10)
            .into_iter()
            .map(|(name, entry)| {
                json!({
                    "server": name,
                    "profile": entry.profile,
                    "score": entry.score(),
                    "level": views::level_of(&snapshot.scale, entry).name(),
                })
            })
            .collect();
        let mut profiles: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        let mut heatmap: BTreeMap<&str, (Vec<&str>, Vec<Option<f64>>)> = BTreeMap::new();
        let with_heatmap = query.heatmap.unwrap_or(false);
        for (name, entry) in &snapshot.servers {
            *profiles
                .entry(&entry.profile)
                .or_default()
                .entry(views::level_of(&snapshot.scale, entry).name())
                .or_default() += 1;
            if with_heatmap {
                let cells = heatmap.entry(&entry.profile).or_default();
                cells.0.push(name);
                cells.1.push(
                    entry
                        .risk
                        .as_ref()
                        .map(|risk| (risk.score * 10.0).round() / 10.0),
                );
            }
        }
        let summary = snapshot.summary.as_deref();
        let keeper = snapshot.stages.get("window_keeper");
        #[derive(serde::Serialize)]
        struct Group<'a> {
            profile: &'a str,
            servers: Vec<&'a str>,
            scores: Vec<Option<f64>>,
        }
        let heatmap: Option<Vec<Group>> = with_heatmap.then(|| {
            heatmap
                .into_iter()
                .map(|(profile, (servers, scores))| Group {
                    profile,
                    servers,
                    scores,
                })
                .collect()
        });
        #[derive(serde::Serialize)]
        struct Summary<'a> {
            #[serde(flatten)]
            rest: serde_json::Value,
            heatmap: Option<Vec<Group<'a>>>,
        }
        let rest = json!({
            "version": snapshot.version,
            "at_ms": wire::now_ms(),
            "servers": counts.servers,
            "scored": counts.scored,
            "counts": counts.counts,
            "avg_risk": counts.avg_risk,
            "max_risk": counts.max_risk,
            "open_alerts": counts.open_alerts,
            "scale": {
                "watch": snapshot.scale.watch,
                "warning": snapshot.scale.warning,
                "critical": snapshot.scale.critical,
            },
            "incident": summary.map(|s| json!({
                "prob_30m": s.prob_30m,
                "prob_8h": s.prob_8h,
                "high_risk_servers": s.high_risk_servers,
                "fleet_health": s.fleet_health,
                "at_ms": s.at_ms,
            })),
            "warmup": keeper.map(|k| json!({
                "percent": k.warmup_pct,
                "servers_ready": k.servers_ready,
                "servers": k.servers,
                "at_ms": k.at_ms,
            })),
            "fleet_clock_ms": snapshot.gate.fleet_clock_ms(),
            "top_risks": top,
            "profiles": profiles,
        });
        // The heatmap, the large part, is serialized straight from the snapshot.
        serde_json::to_vec(&Summary { rest, heatmap }).expect("json serializes")
    };
    json_body(&request, Bytes::from(body), None)
}

/// Body of `POST /api/v1/scenario`.
#[derive(Debug, Deserialize)]
pub struct ScenarioBody {
    /// `healthy`, `natural`, `degrading`, `critical` or `cascade`.
    pub scenario: String,
}

async fn ask_scenario(state: &AppState, scenario: String) -> HttpResponse {
    let bus = &state.bus;
    let request = ScenarioRequest {
        v: SCHEMA_VERSION,
        scenario,
    };
    let reply: Result<ScenarioReply, _> = bus
        .request(
            bus.subjects().control_scenario(),
            &request,
            Duration::from_secs(5),
        )
        .await;
    match reply {
        Ok(reply) if reply.ok => HttpResponse::Ok().json(reply),
        Ok(reply) => HttpResponse::BadRequest().json(reply),
        Err(reason) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no generator answered ({reason}); is one running?"),
        ),
    }
}

/// `GET /api/v1/scenario`: the generator's scenario now.
pub async fn scenario_status(state: web::Data<AppState>) -> HttpResponse {
    ask_scenario(&state, "status".into()).await
}

/// `POST /api/v1/scenario` with `{"scenario": "critical"}`: switches the generator.
pub async fn scenario_switch(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let body: ScenarioBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"scenario\": NAME}} ({reason})"),
            );
        }
    };
    if body.scenario.parse::<Scenario>().is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "scenario `{}` is not one of {}",
                body.scenario,
                Scenario::ALL.map(Scenario::name).join(", ")
            ),
        );
    }
    tracing::info!(stage = STAGE, scenario = %body.scenario, "scenario switch requested over http");
    ask_scenario(&state, body.scenario).await
}

/// `GET /api/v1/model`: the models the latest forecasts came from, and the predictor
/// workers' `$SRV.INFO` where they answer.
pub async fn model(state: web::Data<AppState>) -> HttpResponse {
    let mut models: BTreeMap<(String, String), (usize, i64)> = BTreeMap::new();
    for entry in state.read().servers.values() {
        if let Some(forecast) = &entry.forecast {
            let seen = models
                .entry((forecast.model.clone(), forecast.model_version.clone()))
                .or_default();
            seen.0 += 1;
            seen.1 = seen.1.max(forecast.issued_ms);
        }
    }
    let polled = state
        .polled
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let workers: Vec<_> = polled
        .services
        .iter()
        .filter(|service| service.info.name.contains("predictor"))
        .map(|service| {
            json!({
                "name": service.info.name,
                "id": service.info.id,
                "version": service.info.version,
                "description": service.info.description,
                "metadata": service.info.metadata,
            })
        })
        .collect();
    let mut models: Vec<_> = models
        .into_iter()
        .map(|((model, version), (servers, issued_ms))| {
            json!({ "model": model, "model_version": version, "servers": servers, "newest_issued_ms": issued_ms })
        })
        .collect();
    models.sort_by(|a, b| b["servers"].as_u64().cmp(&a["servers"].as_u64()));
    HttpResponse::Ok().json(json!({
        "in_service": models.first(),
        "models": models,
        "workers": workers,
        "polled_at_ms": polled.at_ms,
    }))
}

/// `GET /api/v1/stages`: every micro service instance (`$SRV.INFO`/`STATS`), every stage's
/// latest status, and the JetStream streams and consumers.
pub async fn stages(state: web::Data<AppState>) -> HttpResponse {
    let polled = state
        .polled
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let services: Vec<_> = polled
        .services
        .iter()
        .map(|service| {
            let endpoints: Vec<_> = service
                .endpoints
                .iter()
                .map(|endpoint| {
                    json!({
                        "name": endpoint.name,
                        "requests": endpoint.requests,
                        "errors": endpoint.errors,
                        "processing_seconds": endpoint.processing.as_secs_f64(),
                        "data": endpoint.data,
                    })
                })
                .collect();
            json!({
                "name": service.info.name,
                "id": service.info.id,
                "version": service.info.version,
                "metadata": service.info.metadata,
                "endpoints": endpoints,
            })
        })
        .collect();
    let statuses: BTreeMap<String, serde_json::Value> = state
        .read()
        .stages
        .iter()
        .map(|(name, status)| (name.clone(), json!(&**status)))
        .collect();
    let consumers: Vec<_> = polled
        .consumers
        .iter()
        .map(|c| json!({"stream": c.stream, "consumer": c.consumer, "pending": c.pending, "ack_pending": c.ack_pending, "redelivered": c.redelivered}))
        .collect();
    let streams: Vec<_> = polled
        .streams
        .iter()
        .map(
            |(name, messages, bytes)| json!({"stream": name, "messages": messages, "bytes": bytes}),
        )
        .collect();
    HttpResponse::Ok().json(json!({
        "services": services,
        "statuses": statuses,
        "streams": streams,
        "consumers": consumers,
        "polled_at_ms": polled.at_ms,
    }))
}

/// `GET /api/v1/events`: Server-Sent Events (see [`super::events`]).
pub async fn events(state: web::Data<AppState>) -> HttpResponse {
    let hello = {
        let snapshot = state.read();
        json!({ "version": snapshot.version, "servers": snapshot.servers.len() })
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(state.push.subscribe(&hello))
}
