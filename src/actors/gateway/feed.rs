//! `POST /feed/data`: the original's batch ingest, `{"records": [...]}`.
//!
//! Each record becomes a [`MetricSample`]: `server_name` (or `server`), `timestamp` (RFC 3339,
//! naive UTC `YYYY-MM-DD HH:MM:SS`, or unix seconds / milliseconds; or `ts_ms`), `profile`
//! (optional), and every other field is a metric. The original's non-metric fields `status`,
//! `problem_child`, `notes` and its 15th metric `cascade_impact` are accepted and dropped; a
//! metric whose value is `null` is not measured in that record.
//!
//! The sample is then encoded exactly as it will be published and checked by the window
//! keeper's own rule ([`super::snapshot::Gate`]: content, range, future and order against the
//! keeper's state mirrored from the metrics stream), so the gateway refuses exactly what the
//! keeper would. Everything goes through the gateway's stage outbox (bounded: a batch waits
//! while it is full): accepted records on `metrics.<server>`, their stream acknowledgements
//! awaited before the reply (at most [`STORE_WITHIN`]); refused ones counted by kind,
//! published on `rejected.gateway` and listed in the reply with their index and reason.
//! Counted in the stage counters: `received` records, `accepted` (stored), `rejected`, and
//! the extras `feed_posts`, `rate_limited`, `not_stored`.
//!
//! Replies: 200 with the counts and refusals; `{"status":"ignored","reason":"empty batch"}`
//! for no records (as the original); 400 when the body is not `{"records": [...]}` JSON; 413
//! over `gateway.max_body_bytes`; 429 over the rate limit; 503 when nothing could be stored.

use super::AppState;
use super::auth::error;
use super::snapshot::last_token;
use crate::actors::stage::{Envelope, Reject};
use crate::offline::input::parse_timestamp;
use crate::samples;
use crate::wire::{self, MetricSample, RejectKind, SCHEMA_VERSION};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The subject a refused record's dead letter names.
pub const FEED_SUBJECT: &str = "POST /feed/data";

/// How long a batch waits for its records to be queued and stored before the reply counts
/// the rest as not stored.
pub const STORE_WITHIN: Duration = Duration::from_secs(5);

/// Record fields of the original that are not metrics and are dropped.
pub const DROPPED_FIELDS: [&str; 4] = ["status", "problem_child", "notes", "cascade_impact"];

/// One refused record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    /// Position in `records`.
    pub index: usize,
    /// The server, when the record named one.
    pub server: Option<String>,
    /// Machine-readable reason (the window keeper's rejection kinds).
    pub kind: &'static str,
    /// Every problem in words.
    pub reason: String,
}

/// Turns one record into a sample, or says why it cannot be one.
///
/// # Errors
/// A reason naming the field when the record is not an object, has no usable timestamp, or
/// a metric that is not a number.
pub fn record_to_sample(record: &Value) -> Result<MetricSample, String> {
    let Some(fields) = record.as_object() else {
        return Err(format!(
            "record is {} and not an object",
            kind_of_json(record)
        ));
    };
    let server = match fields.get("server_name").or_else(|| fields.get("server")) {
        Some(Value::String(server)) => server.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            return Err(format!(
                "server_name is {} and not a string",
                kind_of_json(other)
            ));
        }
    };
    let ts_ms = match (fields.get("timestamp"), fields.get("ts_ms")) {
        (Some(Value::String(text)), _) => parse_timestamp(text)?,
        (Some(Value::Number(number)), _) => parse_timestamp(&number.to_string())?,
        (None, Some(Value::Number(number))) => number
            .as_i64()
            .ok_or_else(|| format!("ts_ms = {number} is not whole milliseconds"))?,
        (None, None) => return Err("timestamp is missing".into()),
        (Some(other), _) | (None, Some(other)) => {
            return Err(format!(
                "timestamp is {} and not a time",
                kind_of_json(other)
            ));
        }
    };
    let profile = match fields.get("profile") {
        None | Some(Value::Null) => None,
        Some(Value::String(profile)) => Some(profile.clone()),
        Some(other) => {
            return Err(format!(
                "profile is {} and not a string",
                kind_of_json(other)
            ));
        }
    };
    let mut metrics = BTreeMap::new();
    for (name, value) in fields {
        if matches!(
            name.as_str(),
            "server_name" | "server" | "timestamp" | "ts_ms" | "profile"
        ) || DROPPED_FIELDS.contains(&name.as_str())
        {
            continue;
        }
        match value {
            Value::Null => {}
            Value::Number(number) => {
                let value = number
                    .as_f64()
                    .ok_or_else(|| format!("metric {name} = {number} is not a number"))?;
                metrics.insert(name.clone(), value);
            }
            other => {
                return Err(format!(
                    "metric {name} is {} and not a number",
                    kind_of_json(other)
                ));
            }
        }
    }
    Ok(MetricSample {
        v: SCHEMA_VERSION,
        server,
        ts_ms,
        profile,
        metrics,
    })
}

fn kind_of_json(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the body up to `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(limit: usize) -> HttpResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over gateway.max_body_bytes ({limit} bytes): send smaller batches"),
    )
}

/// `POST /feed/data`.
pub async fn feed_data(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    state.extras.feed_posts.incr();
    if let Some(client) = request.peer_addr().map(|addr| addr.ip())
        && let Err(wait) = state.limiter.take(client, std::time::Instant::now())
    {
        state.extras.rate_limited.incr();
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over gateway.feed_rate_per_minute ({} per minute): retry in {:.1} s",
                state.settings.gateway.feed_rate_per_minute,
                wait.as_secs_f64()
            ),
        );
        if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let limit = state.settings.gateway.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large(limit);
    }
    let body = match read_body(payload, limit).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let records = match parse_batch(&body) {
        Ok(records) => records,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    if records.is_empty() {
        return HttpResponse::Ok().json(json!({"status": "ignored", "reason": "empty batch"}));
    }
    let stage = &state.stage;
    stage.counters().received_many(records.len() as u64);
    let (accepted, refused) = check_records(&state, &records);
    for refusal in &refused {
        let reason = format!("record {}: {}", refusal.index, refusal.reason);
        let reject =
            Reject::new(reject_kind(refusal.kind), reason).or_server(refusal.server.as_deref());
        stage.reject(FEED_SUBJECT, reject).await;
    }
    let subjects = state.bus.subjects();
    let published = accepted.len() as u64;
    let envelopes = accepted
        .into_iter()
        .map(|(server, payload)| Envelope::encoded(subjects.metrics(&server), payload.into(), true))
        .collect();
    let outcomes = stage.publish_confirmed(envelopes, STORE_WITHIN).await;
    let stored = outcomes
        .iter()
        .filter(|&&outcome| outcome == Some(true))
        .count() as u64;
    let not_stored = published - stored;
    if not_stored > 0 {
        // The outbox logs failed publishes (rate-limited); the reply names the count.
        tracing::debug!(
            stage = super::STAGE,
            not_stored,
            published,
            "feed records not stored"
        );
    }
    stage.counters().accepted_many(stored);
    state.extras.not_stored.add(not_stored);
    let (servers, ready, pct) = {
        let snapshot = state.read();
        let keeper = snapshot.stages.get("window_keeper");
        (
            snapshot.servers.len(),
            keeper.map_or(0, |status| status.servers_ready),
            keeper.map_or(0.0, |status| status.warmup_pct),
        )
    };
    let status = match (stored, refused.is_empty() && not_stored == 0) {
        (0, _) if published > 0 => "failed",
        (0, _) => "rejected",
        (_, true) => "accepted",
        (_, false) => "partial",
    };
    let code = if status == "failed" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    HttpResponse::build(code).json(json!({
        "status": status,
        "received": records.len(),
        "accepted": stored,
        "rejected": refused.len(),
        "not_stored": not_stored,
        "refused": refused,
        "servers_tracked": servers,
        "servers_ready": ready,
        "warmup_percent": pct,
        "warmup_complete": servers > 0 && ready as usize >= servers,
        "window_size": state.settings.window_keeper.context_steps,
    }))
}

/// The records of a `{"records": [...]}` body.
///
/// # Errors
/// A reason saying what is wrong with the body.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}); send {{\"records\": [...]}}"))?;
    let Value::Object(mut object) = value else {
        return Err(format!(
            "the body is {} and not an object {{\"records\": [...]}}",
            kind_of_json(&value)
        ));
    };
    match object.remove("records") {
        Some(Value::Array(records)) => Ok(records),
        Some(other) => Err(format!(
            "records is {} and not an array",
            kind_of_json(&other)
        )),
        None => Err(format!(
            "the body has no `records` (fields: {})",
            field_names(&object)
        )),
    }
}

fn field_names(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "none".into();
    }
    object
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every record against the keeper's rule, in order, advancing the mirrored keeper
/// state with each accepted one: `(server, payload)` to publish, and the refusals.
fn check_records(state: &AppState, records: &[Value]) -> (Vec<(String, Vec<u8>)>, Vec<Refused>) {
    let mut accepted = Vec::with_capacity(records.len());
    let mut refused = Vec::new();
    let now = wire::now_ms();
    let mut snapshot = state
        .snapshot
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (index, record) in records.iter().enumerate() {
        let named = record
            .get("server_name")
            .or_else(|| record.get("server"))
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_string);
        let sample = match record_to_sample(record) {
            Ok(sample) => sample,
            Err(reason) => {
                refused.push(Refused {
                    index,
                    server: named,
                    kind: RejectKind::Undecodable.name(),
                    reason,
                });
                continue;
            }
        };
        let payload = wire::encode(&sample);
        let view = samples::decode(&payload).expect("a sample just encoded decodes");
        // The subject is `metrics.<server>`: its last token is what a name with a dot would
        // break, and the keeper's check reports that as a bad server.
        let subject_server = last_token(&sample.server);
        match snapshot.gate.check(subject_server, &view, now) {
            Ok(checked) => {
                snapshot.gate.accept(&sample.server, checked.step);
                accepted.push((sample.server.clone(), payload.clone()));
            }
            Err(invalid) => refused.push(Refused {
                index,
                server: named,
                kind: invalid.kind.name(),
                reason: invalid.reason,
            }),
        }
    }
    (accepted, refused)
}

fn reject_kind(name: &str) -> RejectKind {
    RejectKind::from_name(name).unwrap_or(RejectKind::Undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original's record shape becomes a sample: its extra fields dropped, nulls absent.
    #[test]
    fn original_records_become_samples() {
        let record = json!({
            "timestamp": "2025-10-18T12:00:00",
            "server_name": "ppdb001",
            "profile": "database",
            "status": "healthy",
            "cascade_impact": 0.1,
            "cpu_user_pct": 45.2,
            "mem_used_pct": null,
        });
        let sample = record_to_sample(&record).unwrap();
        assert_eq!(sample.server, "ppdb001");
        assert_eq!(sample.ts_ms, 1_760_788_800_000);
        assert_eq!(sample.profile.as_deref(), Some("database"));
        assert_eq!(
            sample.metrics,
            BTreeMap::from([("cpu_user_pct".to_string(), 45.2)])
        );
    }

    /// A record that cannot be a sample says which field is wrong.
    #[test]
    fn bad_records_name_the_field() {
        assert!(
            record_to_sample(&json!([1]))
                .unwrap_err()
                .contains("not an object")
        );
        assert!(
            record_to_sample(&json!({"server_name": "a"}))
                .unwrap_err()
                .contains("timestamp is missing")
        );
        let text = json!({"server_name": "a", "timestamp": 1.7e9, "cpu_user_pct": "high"});
        assert!(
            record_to_sample(&text)
                .unwrap_err()
                .contains("cpu_user_pct is a string")
        );
        assert!(
            record_to_sample(&json!({"server_name": "a", "timestamp": "yesterday"}))
                .unwrap_err()
                .contains("yesterday")
        );
    }

    /// Only `{"records": [...]}` is a batch, and the error says what the body was instead.
    #[test]
    fn batches_must_be_records_objects() {
        assert_eq!(parse_batch(br#"{"records": []}"#).unwrap().len(), 0);
        assert!(parse_batch(b"[1,2]").unwrap_err().contains("an array"));
        assert!(
            parse_batch(br#"{"rows": []}"#)
                .unwrap_err()
                .contains("fields: rows")
        );
        assert!(parse_batch(b"{").unwrap_err().contains("not JSON"));
        assert!(
            parse_batch(br#"{"records": 3}"#)
                .unwrap_err()
                .contains("a number")
        );
    }
}
