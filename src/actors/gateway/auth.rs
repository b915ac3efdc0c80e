//! Who may call the gateway, and how often: the API key (`X-API-Key`, compared in constant
//! time), CORS for pages served from other origins, the `POST /feed/data` rate limit, and the
//! per-route request counters that `/metrics` reports.
//!
//! With `gateway.api_key` set, every request needs the key except `/health` (always open, so
//! probes work), the dashboard's own files (`/`, `/assets/…`: the page asks for the key and
//! sends it with its API calls), CORS preflights, and `/metrics` unless
//! `gateway.metrics_requires_key`. A missing or wrong key gets 401 with a JSON error (the
//! original answered 403 and its dashboard often sent no key at all).

use super::AppState;
use crate::actors::stage::Extra;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A JSON error body: `{"error": message, "status": code}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": message.into(),
        "status": status.as_u16(),
    }))
}

/// Whether `given` equals `expected`, in a time that depends only on `expected`'s length.
pub fn keys_match(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, &byte) in expected.iter().enumerate() {
        let other = given.get(index).copied().unwrap_or(!byte);
        difference |= usize::from(other ^ byte);
    }
    std::hint::black_box(difference) == 0
}

/// Whether `path` is served without the key.
fn is_open(path: &str, metrics_requires_key: bool) -> bool {
    path == "/health"
        || path == "/"
        || path.starts_with("/assets/")
        || (path == "/metrics" && !metrics_requires_key)
}

/// The CORS origin to allow for a request's `Origin`, if any.
fn allowed_origin(origins: &[String], origin: &str) -> Option<String> {
    origins
        .iter()
        .find(|allowed| *allowed == "*" || *allowed == origin)
        .map(|allowed| {
            if allowed == "*" {
                "*".to_string()
            } else {
                origin.to_string()
            }
        })
}

/// The middleware: CORS, the API key, and request counting.
///
/// # Errors
/// Whatever the handler returns.
pub async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(request).await.map(|r| r.map_into_left_body());
    };
    let settings = &state.settings.gateway;
    let started = Instant::now();
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .and_then(|origin| allowed_origin(&settings.cors_origins, origin));
    let with_cors = |mut response: HttpResponse| {
        if let Some(origin) = &origin
            && let Ok(value) = header::HeaderValue::from_str(origin)
        {
            response
                .headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            response
                .headers_mut()
                .insert(header::VARY, header::HeaderValue::from_static("Origin"));
        }
        response
    };
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "X-API-Key, Content-Type",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .finish();
        return Ok(request
            .into_response(with_cors(response))
            .map_into_right_body());
    }
    let path = request.path().to_string();
    if !settings.api_key.is_empty() && !is_open(&path, settings.metrics_requires_key) {
        let refusal = match request.headers().get(API_KEY_HEADER) {
            None => Some("missing X-API-Key header"),
            Some(given) if !keys_match(given.as_bytes(), settings.api_key.as_bytes()) => {
                Some("wrong API key in X-API-Key")
            }
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            state.requests.count("unauthorized", 401, started.elapsed());
            let response = with_cors(error(StatusCode::UNAUTHORIZED, reason));
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    let mut response = next.call(request).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    state
        .requests
        .count(&route, response.status().as_u16(), started.elapsed());
    if let Some(origin) = &origin
        && let Ok(value) = header::HeaderValue::from_str(origin)
    {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    Ok(response.map_into_left_body())
}

/// A token bucket per client address: `per_minute` requests, refilled evenly over a minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `per_minute` (0: no limit).
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`, or says how long to wait for one.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            // Forget clients whose bucket has refilled: they lose nothing.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < capacity
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

/// Requests served, by route pattern and status code, with their total time; each one also
/// counted in the stage's `requests`.
#[derive(Debug)]
pub struct RequestCounters {
    inner: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
    total: Extra,
}

impl RequestCounters {
    /// Counters that also count every request in `total`.
    pub fn new(total: Extra) -> RequestCounters {
        RequestCounters {
            inner: Mutex::default(),
            total,
        }
    }

    /// Counts one request.
    pub fn count(&self, route: &str, status: u16, took: Duration) {
        self.total.incr();
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = inner.entry((route.to_string(), status)).or_default();
        entry.0 += 1;
        entry.1 += took.as_secs_f64();
    }

    /// Every (route, status) → (requests, seconds).
    pub fn snapshot(&self) -> BTreeMap<(String, u16), (u64, f64)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the exact key matches: not a prefix, not a longer string, not an empty one.
    #[test]
    fn keys_match_exactly() {
        assert!(keys_match(b"secret-key", b"secret-key"));
        assert!(!keys_match(b"secret-ke", b"secret-key"));
        assert!(!keys_match(b"secret-key!", b"secret-key"));
        assert!(!keys_match(b"", b"secret-key"));
        assert!(!keys_match(b"Secret-key", b"secret-key"));
    }

    /// A bucket of 3 per minute allows 3 at once, then asks to wait about 20 s, and refills.
    #[test]
    fn the_rate_limit_refills_over_a_minute() {
        let limiter = RateLimiter::new(3);
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(client, now).is_ok());
        }
        let wait = limiter.take(client, now).unwrap_err();
        assert!((19.0..=21.0).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(limiter.take(client, now + Duration::from_secs(21)).is_ok());
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limiter.take(other, now).is_ok(), "buckets are per client");
    }

    /// The dashboard's files and `/health` are open; `/metrics` only when not keyed.
    #[test]
    fn open_paths() {
        assert!(is_open("/health", true));
        assert!(is_open("/assets/app.js", true));
        assert!(is_open("/metrics", false));
        assert!(!is_open("/metrics", true));
        assert!(!is_open("/predictions/current", false));
        assert_eq!(
            allowed_origin(&["http://a".into()], "http://a").as_deref(),
            Some("http://a")
        );
        assert_eq!(allowed_origin(&["http://a".into()], "http://b"), None);
        assert_eq!(
            allowed_origin(&["*".into()], "http://b").as_deref(),
            Some("*")
        );
    }
}
