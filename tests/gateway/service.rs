//! The gateway on the stage toolkit: a plain NATS client finds `fleetcast-gateway` with
//! `$SRV.PING` and reads its counters with `$SRV.STATS` (feed records received, accepted and
//! refused by kind, dead letters on `rejected.gateway`), and a drain stops its HTTP server
//! and its service.

use super::*;
use crate::util::{TestNats, answers, ask, collect};
use fleetcast::actors::stage::Drain;
use fleetcast::wire::{Rejection, StageReport};
use serde_json::json;

/// After a batch of two good records and one refused, `$SRV.STATS.fleetcast-gateway` says
/// received 3 = accepted 2 + rejected 1 (by kind), the refusal is a dead letter, and the
/// facts name the address; a drain stops the service and the HTTP server.
#[actix::test]
async fn the_gateway_is_a_micro_service_until_drained() {
    let nats = TestNats::start();
    let bus = nats.bus().await;
    let settings = settings(&nats);
    let gateway = start(&settings, &bus).await;
    let mut dead = dead_letters(&bus).await;

    let pings = ask(&bus, "$SRV.PING", 1).await;
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(pings[0]["name"], "fleetcast-gateway");
    assert_eq!(pings[0]["metadata"]["stage"], "gateway");

    let now = now_s();
    let records = json!({"records": [
        {"ts_ms": now * 1000, "server_name": "ppdb001", "cpu_user_pct": 45.0},
        {"ts_ms": now * 1000, "server_name": "ppweb001", "mem_used_pct": 140.0},
        {"ts_ms": now * 1000, "server_name": "ppweb002", "mem_used_pct": 40.0},
    ]});
    let (status, reply) = post_json(&gateway, "/feed/data", &records).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 2, "{reply}");

    let stats = ask(&bus, "$SRV.STATS.fleetcast-gateway", 1).await;
    assert_eq!(stats.len(), 1, "{stats:?}");
    let report: StageReport =
        serde_json::from_value(stats[0]["endpoints"][0]["data"].clone()).expect("a report");
    assert_eq!(report.stage, "gateway");
    let counters = &report.counters;
    assert_eq!(counters["received"], 3, "{report:?}");
    assert_eq!(counters["accepted"], 2, "{report:?}");
    assert_eq!(counters["rejected"], 1, "{report:?}");
    assert_eq!(
        counters["received"],
        counters["accepted"] + counters["rejected"] + counters["not_stored"],
        "{report:?}"
    );
    assert_eq!(counters["rejected.out_of_range"], 1, "{report:?}");
    assert_eq!(counters["feed_posts"], 1, "{report:?}");
    assert!(counters["requests"] >= 1, "{report:?}");
    assert!(counters["published"] >= 2, "the stored records: {report:?}");
    assert_eq!(report.facts["listen"], gateway.local_addr.to_string());
    assert!(report.facts.contains_key("sse_clients"), "{report:?}");

    let letters = collect(&mut dead, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    let letter: Rejection = wire::decode(&letters[0].payload).unwrap();
    assert_eq!(letter.stage, "gateway");
    assert_eq!(letter.subject, "POST /feed/data");
    assert_eq!(letter.server.as_deref(), Some("ppweb001"));
    assert!(letter.reason.starts_with("record 1:"), "{}", letter.reason);

    gateway.stage.send(Drain).await.expect("the gateway drains");
    assert!(
        !answers(&bus, "fleetcast-gateway").await,
        "the service answers after the drain"
    );
    let address = gateway.local_addr;
    wait_until(
        "the http server to stop listening",
        Duration::from_secs(10),
        || async move { std::net::TcpStream::connect(address).is_err().then_some(()) },
    )
    .await;
}
