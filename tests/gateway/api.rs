//! The original's endpoints in its shapes, `/api/v1`, push events, auth and the OpenAPI
//! document, on synthetic forecasts, risk scores and alerts published to the real streams.

use super::*;
use crate::util::TestNats;
use fleetcast::actors::gateway::ROUTES;
use fleetcast::wire::AlertAction;
use futures::StreamExt;

/// Three servers: `ppdb001` (database, critical, 3 metrics forecast, an open critical
/// memory alert) stored before the gateway starts; `ppweb001` (web_api, watch, only cpu and
/// memory, an alert raised then resolved) and `ppml001` (healthy, no forecast) after.
async fn fleet_before(bus: &Bus, now: i64) {
    let subjects = bus.subjects();
    store(
        bus,
        &[(
            subjects.metrics("ppdb001"),
            sample(
                "ppdb001",
                now,
                &[
                    ("mem_used_pct", 96.0),
                    ("cpu_user_pct", 40.0),
                    ("cpu_idle_pct", 50.0),
                ],
            ),
        )],
    )
    .await;
    store(
        bus,
        &[(
            subjects.forecasts("ppdb001"),
            forecast(
                "ppdb001",
                now,
                &[
                    ("mem_used_pct", 90.0, 0.1),
                    ("cpu_user_pct", 40.0, 0.0),
                    ("cpu_idle_pct", 50.0, 0.0),
                ],
            ),
        )],
    )
    .await;
    store(
        bus,
        &[(subjects.risk("ppdb001"), risk("ppdb001", 75.0, now))],
    )
    .await;
    store(
        bus,
        &[(
            subjects.alerts("critical", "ppdb001"),
            alert(
                "ppdb001",
                "mem_used_pct",
                AlertAction::Raise,
                "critical",
                now,
            ),
        )],
    )
    .await;
}

async fn fleet_after(bus: &Bus, now: i64) {
    let subjects = bus.subjects();
    store(
        bus,
        &[(
            subjects.metrics("ppweb001"),
            sample(
                "ppweb001",
                now,
                &[("mem_used_pct", 50.0), ("cpu_user_pct", 30.0)],
            ),
        )],
    )
    .await;
    store(
        bus,
        &[(
            subjects.forecasts("ppweb001"),
            forecast(
                "ppweb001",
                now,
                &[("mem_used_pct", 50.0, 0.0), ("cpu_user_pct", 30.0, 0.5)],
            ),
        )],
    )
    .await;
    store(
        bus,
        &[
            (subjects.risk("ppweb001"), risk("ppweb001", 30.0, now)),
            (subjects.risk("ppml001"), risk("ppml001", 5.0, now)),
        ],
    )
    .await;
    store(
        bus,
        &[(
            subjects.alerts("warning", "ppweb001"),
            alert("ppweb001", "risk", AlertAction::Raise, "warning", now),
        )],
    )
    .await;
    store(
        bus,
        &[(
            subjects.alerts("warning", "ppweb001"),
            alert(
                "ppweb001",
                "risk",
                AlertAction::Resolve,
                "healthy",
                now + 300,
            ),
        )],
    )
    .await;
}

async fn started(nats: &TestNats, adjust: impl FnOnce(&mut Settings)) -> (Bus, Gateway, i64) {
    let bus = nats.bus().await;
    let now = now_s();
    fleet_before(&bus, now).await;
    let mut settings = settings(nats);
    adjust(&mut settings);
    let gateway = start(&settings, &bus).await;
    fleet_after(&bus, now).await;
    wait_scored(&gateway, 3).await;
    let state = gateway.state.clone();
    wait_until(
        "the resolve of ppweb001's alert",
        Duration::from_secs(30),
        || {
            let state = state.clone();
            async move { (state.read().open_alerts().count() == 1).then_some(()) }
        },
    )
    .await;
    (bus, gateway, now)
}

/// `/predictions/current`, `/alerts/active`, `/status` and `/health` answer in the original's
/// shapes, from streams read back at start and live messages alike; a metric a server does
/// not report is absent, not zero.
#[actix::test]
async fn original_endpoints_answer_in_their_shapes() {
    let nats = TestNats::start();
    let (_bus, gateway, _) = started(&nats, |_| {}).await;

    let (status, body) = get_json(&gateway, "/predictions/current").await;
    assert_eq!(status, 200);
    let db = &body["predictions"]["ppdb001"];
    assert_eq!(db["mem_used_pct"]["p50"].as_array().unwrap().len(), 96);
    assert_eq!(db["mem_used_pct"]["p10"][0], 85.0);
    assert_eq!(db["mem_used_pct"]["p90"][0], 95.0);
    assert_eq!(db["mem_used_pct"]["current"], 96.0);
    assert_eq!(db["mem_used_pct"]["observed_steps"], 200);
    assert_eq!(db["risk_score"], 75.0);
    assert_eq!(db["profile"], "Database");
    assert_eq!(db["alert"]["level"], "critical");
    assert_eq!(db["alert"]["color"], "#ff4444");
    assert_eq!(db["alert"]["label"], "Act Now");
    assert_eq!(
        db["display_metrics"]["cpu"]["current"], 50.0,
        "cpu = 100 - idle"
    );
    assert_eq!(db["display_metrics"]["memory"]["unit"], "%");
    let web = &body["predictions"]["ppweb001"];
    assert!(web["cpu_user_pct"].is_object());
    assert!(
        web.get("swap_used_pct").is_none(),
        "a metric not reported is absent: {web}"
    );
    assert!(web["display_metrics"].get("swap").is_none());
    assert_eq!(web["alert"]["level"], "watch");
    assert!(body["predictions"]["ppml001"].get("mem_used_pct").is_none());
    assert_eq!(body["summary"]["total_servers"], 3);
    assert_eq!(body["summary"]["critical_count"], 1);
    assert_eq!(body["summary"]["degrading_count"], 1);
    assert_eq!(body["summary"]["healthy_count"], 1);
    assert_eq!(body["summary"]["top_5_risks"][0]["server"], "ppdb001");
    assert_eq!(body["metadata"]["horizon_steps"], 96);
    assert_eq!(body["metadata"]["model"], "tft-test");
    assert_eq!(body["environment"]["total_servers"], 3);
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1);

    let (status, active) = get_json(&gateway, "/alerts/active").await;
    assert_eq!(status, 200);
    assert_eq!(
        active["count"], 1,
        "the resolved alert is not active: {active}"
    );
    let open = &active["alerts"][0];
    assert_eq!(open["server"], "ppdb001");
    assert_eq!(open["metric"], "mem_used_pct");
    assert_eq!(open["severity"], "critical");
    assert_eq!(open["threshold"], 98.0);
    // p50 = 90 + 0.1 i first reaches 98 at step 80: beyond the 12 steps the alerts look at.
    assert!(open["steps_ahead"].is_null(), "{open}");

    let (status, health) = get_json(&gateway, "/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    let (status, status_body) = get_json(&gateway, "/status").await;
    assert_eq!(status, 200);
    assert_eq!(status_body["running"], true);
    assert_eq!(status_body["window_size"], 288);
    assert!(status_body["warmup"]["message"].is_string());
}

/// A gzip client gets the same `/predictions/current`, compressed, also when a plain client
/// asked first (the cached response is then compressed once, for the next ones).
#[actix::test]
async fn predictions_are_gzipped_when_asked() {
    let nats = TestNats::start();
    let (_bus, gateway, _) = started(&nats, |_| {}).await;
    let (_, first) = get_json(&gateway, "/predictions/current").await;
    let mut response = client()
        .get(url(&gateway, "/predictions/current"))
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = response.body().limit(64 << 20).await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut plain,
    )
    .unwrap();
    let body: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(body["predictions"]["ppdb001"]["risk_score"], 75.0);
    let (_, uncompressed) = get_json(&gateway, "/predictions/current").await;
    assert_eq!(body["predictions"], uncompressed["predictions"]);
    assert_eq!(first["predictions"], uncompressed["predictions"]);
}

/// `/api/v1/servers` filters by profile and level and sorts by risk; one server's page has
/// its forecast bands with observed steps, drivers, attention, factors and open alerts; bad
/// filters and unknown servers are named in the error.
#[actix::test]
async fn api_v1_servers_and_one_server() {
    let nats = TestNats::start();
    let (_bus, gateway, now) = started(&nats, |_| {}).await;
    let (_, all) = get_json(&gateway, "/api/v1/servers").await;
    let order: Vec<&str> = all["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["ppdb001", "ppweb001", "ppml001"],
        "highest risk first"
    );
    let (_, by_name) = get_json(&gateway, "/api/v1/servers?sort=name&limit=2").await;
    assert_eq!(by_name["count"], 2);
    assert_eq!(by_name["matched"], 3);
    assert_eq!(by_name["servers"][0]["server"], "ppdb001");
    assert_eq!(by_name["servers"][1]["server"], "ppml001");
    let (_, db) = get_json(&gateway, "/api/v1/servers?profile=database").await;
    assert_eq!(db["count"], 1);
    assert_eq!(db["servers"][0]["open_alerts"], 1);
    assert_eq!(db["servers"][0]["alert_severity"], "critical");
    let (_, watch) = get_json(&gateway, "/api/v1/servers?level=watch").await;
    assert_eq!(watch["servers"][0]["server"], "ppweb001");
    let (status, bad) = get_json(&gateway, "/api/v1/servers?level=severe").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("severe"), "{bad}");
    let (status, bad) = get_json(&gateway, "/api/v1/servers?profile=mainframe").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("mainframe"));

    let (status, page) = get_json(&gateway, "/api/v1/servers/ppdb001").await;
    assert_eq!(status, 200);
    assert_eq!(page["level"], "critical");
    assert_eq!(page["latest_sample"]["metrics"]["mem_used_pct"], 96.0);
    assert_eq!(page["latest_sample"]["ts_ms"], now * 1000);
    assert_eq!(page["recent"]["metrics"]["mem_used_pct"][0], 96.0);
    assert_eq!(page["recent"]["step_s"][0], now);
    assert_eq!(
        page["forecast"]["metrics"]["mem_used_pct"]["observed_steps"],
        200
    );
    assert_eq!(page["forecast"]["drivers"][0]["variable"], "value");
    assert_eq!(page["forecast"]["attention"]["recent_share"], 0.6);
    assert_eq!(page["risk"]["factors"][0]["metric"], "mem_used_pct");
    assert_eq!(page["alerts"][0]["subject"], "mem_used_pct");
    assert_eq!(page["units"]["net_in_mb_s"], "MB/s");
    let (status, missing) = get_json(&gateway, "/api/v1/servers/nosuch").await;
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("nosuch"));

    let (_, summary) = get_json(&gateway, "/api/v1/summary?heatmap=true").await;
    assert_eq!(summary["servers"], 3);
    assert_eq!(summary["counts"]["critical"], 1);
    assert_eq!(summary["open_alerts"]["critical"], 1);
    assert_eq!(summary["top_risks"][0]["server"], "ppdb001");
    let heatmap = summary["heatmap"].as_array().unwrap();
    assert_eq!(heatmap.len(), 3, "one group per profile");
    let database = heatmap.iter().find(|g| g["profile"] == "database").unwrap();
    assert_eq!(database["servers"][0], "ppdb001");
    assert_eq!(database["scores"][0], 75.0);
    let (_, model) = get_json(&gateway, "/api/v1/model").await;
    assert_eq!(model["in_service"]["model"], "tft-test");
    assert_eq!(model["in_service"]["servers"], 2);
}

/// The alert history comes from the stream for the asked range, as JSON, the original's
/// CSV-in-JSON export, and plain CSV; a bad range is a 400 naming it.
#[actix::test]
async fn alert_history_reads_the_stream() {
    let nats = TestNats::start();
    let (bus, gateway, now) = started(&nats, |_| {}).await;
    let old = alert(
        "ppold01",
        "risk",
        AlertAction::Raise,
        "warning",
        now - 3 * 3600,
    );
    store(&bus, &[(bus.subjects().alerts("warning", "ppold01"), old)]).await;
    let (status, hour) = get_json(&gateway, "/historical/alerts?time_range=1h").await;
    assert_eq!(status, 200);
    assert_eq!(
        hour["count"], 3,
        "raise, raise, resolve of the last hour: {hour}"
    );
    let types: Vec<&str> = hour["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["raised", "raised", "resolved"]);
    assert_eq!(hour["alerts"][2]["resolution_duration_minutes"], 10.0);
    let (_, day) = get_json(&gateway, "/historical/alerts?time_range=1d").await;
    assert_eq!(day["count"], 4, "the 3-hour-old event is in the day");
    let (_, one) = get_json(
        &gateway,
        "/historical/alerts?time_range=1d&server_name=ppweb001",
    )
    .await;
    assert_eq!(one["count"], 2);
    let (status, export) = get_json(&gateway, "/historical/export/alerts?time_range=1d").await;
    assert_eq!(status, 200);
    let csv = export["csv_data"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 5, "header and 4 events: {csv}");
    assert!(csv.starts_with("id,timestamp,server_name"));
    assert!(
        export["filename"]
            .as_str()
            .unwrap()
            .starts_with("fleetcast_alerts_1d_")
    );
    let mut response = client()
        .get(url(
            &gateway,
            "/api/v1/alerts?state=history&time_range=1d&format=csv",
        ))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = response.body().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&body).lines().count(), 5);
    let (status, bad) = get_json(&gateway, "/historical/alerts?time_range=3y").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("3y"));
    let (_, active) = get_json(&gateway, "/api/v1/alerts?format=json").await;
    assert_eq!(
        active["count"], 2,
        "ppdb001's and the old one's, never resolved: {active}"
    );
}

/// With a key set, a request without it or with a wrong one gets 401 and a JSON error;
/// `/health` and the dashboard stay open; `/metrics` is open unless keyed; CORS preflights
/// from an allowed origin are answered.
#[actix::test]
async fn the_api_key_guards_the_api() {
    let nats = TestNats::start();
    let key = "k3y-for-tests";
    let (_bus, gateway, _) = started(&nats, |settings| {
        settings.gateway.api_key = key.into();
        settings.gateway.cors_origins = vec!["http://dash.example".into()];
    })
    .await;
    let (status, body) = get_json(&gateway, "/predictions/current").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing X-API-Key header");
    let (status, body) = get_json_with(
        &gateway,
        "/api/v1/servers",
        &[("X-API-Key", "k3y-for-test")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "wrong API key in X-API-Key");
    let (status, _) = get_json_with(&gateway, "/api/v1/servers", &[("X-API-Key", key)]).await;
    assert_eq!(status, 200);
    assert_eq!(get_json(&gateway, "/health").await.0, 200);
    assert_eq!(
        client()
            .get(url(&gateway, "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(url(&gateway, "/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let preflight = client()
        .request(
            actix_web::http::Method::OPTIONS,
            url(&gateway, "/api/v1/servers"),
        )
        .insert_header(("Origin", "http://dash.example"))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "http://dash.example"
    );
    let (_, other) = get_json_with(
        &gateway,
        "/api/v1/servers",
        &[("X-API-Key", key), ("Origin", "http://evil.example")],
    )
    .await;
    assert!(other["servers"].is_array());

    let nats = TestNats::start();
    let (_bus, keyed, _) = started(&nats, |settings| {
        settings.gateway.api_key = key.into();
        settings.gateway.metrics_requires_key = true;
    })
    .await;
    assert_eq!(
        client()
            .get(url(&keyed, "/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let keyed_metrics = client()
        .get(url(&keyed, "/metrics"))
        .insert_header(("X-API-Key", key))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed_metrics.status(), 200);
}

/// Every route in the OpenAPI document is served (none falls through to the 404 handler).
#[actix::test]
async fn every_documented_route_is_served() {
    let nats = TestNats::start();
    let (_bus, gateway, _) = started(&nats, |_| {}).await;
    for (method, path) in ROUTES {
        let path = path
            .replace("{server}", "ppdb001")
            .replace("{file}", "app.js");
        let mut response = match *method {
            "GET" => client().get(url(&gateway, &path)).send().await.unwrap(),
            _ => client()
                .post(url(&gateway, &path))
                .send_json(&serde_json::json!({"records": [], "scenario": "healthy"}))
                .await
                .unwrap(),
        };
        let status = response.status().as_u16();
        if path == "/api/v1/events" {
            assert_eq!(status, 200);
            continue;
        }
        let body = response.body().limit(64 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("no route"),
            "{method} {path} is not served: {status} {text}"
        );
        // The scenario switch needs a generator; without one it says so.
        assert!(
            status == 200 || (path == "/api/v1/scenario" && status == 503),
            "{method} {path}: {status} {text}"
        );
    }
    let (status, body) = get_json(&gateway, "/nowhere").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/nowhere"));
}

/// A push client gets `hello`, then the risk and alert events of what is published after it
/// connected.
#[actix::test]
async fn push_events_carry_risk_and_alerts() {
    let nats = TestNats::start();
    let (bus, gateway, now) = started(&nats, |_| {}).await;
    let response = client()
        .get(url(&gateway, "/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut stream = response;
    let mut seen = String::new();
    let mut read_until = async |needle: &str, seen: &mut String| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap_or_else(|_| panic!("no `{needle}` in the event stream: {seen}"))
                .expect("the stream goes on")
                .expect("a chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("event: hello", &mut seen).await;
    store(
        &bus,
        &[(
            bus.subjects().risk("ppml001"),
            risk("ppml001", 55.0, now + 300),
        )],
    )
    .await;
    read_until("\"server\":\"ppml001\"", &mut seen).await;
    assert!(seen.contains("event: risk"), "{seen}");
    assert!(seen.contains("\"level\":\"warning\""), "{seen}");
    store(
        &bus,
        &[(
            bus.subjects().alerts("warning", "ppml001"),
            alert("ppml001", "risk", AlertAction::Raise, "warning", now + 300),
        )],
    )
    .await;
    read_until("event: alert", &mut seen).await;
    assert!(seen.contains("ppml001-risk-1000"), "{seen}");
    assert_eq!(gateway.state.push.clients(), 1);
}
