//! The least-privilege bus (`nats/auth.conf`): a real nats-server with one user per actor
//! refuses anonymous clients and every publish outside a user's allow list. (The whole
//! pipeline on its users is `e2e::every_actor_runs_as_its_own_user`.)

use crate::util::TestNats;
use fleetcast::bus::{Bus, round_trip};
use fleetcast::settings::{BusRole, Settings};
use std::time::Duration;
use tokio::sync::mpsc;

/// Connects as `role` with a callback that hands the server's errors to the test.
async fn connect_watching(
    settings: &Settings,
    role: BusRole,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let user = settings.nats.user(role).expect("the role has a user");
    let (errors_tx, errors_rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(
        user.user.clone(),
        user.password.clone(),
    )
    .custom_inbox_prefix(format!("_INBOX_{}", role.key()))
    .event_callback(move |event| {
        let errors_tx = errors_tx.clone();
        async move {
            if let async_nats::Event::ServerError(error) = event {
                let _ = errors_tx.send(error.to_string());
            }
        }
    })
    .connect(settings.nats.url.as_str())
    .await
    .expect("the user connects");
    (client, errors_rx)
}

/// The predictor's user may publish forecasts but not alerts: the server answers the alert
/// with a permissions violation and drops it, so a subscriber sees the alert router's alert
/// and never the predictor's.
#[tokio::test]
async fn the_predictor_cannot_publish_alerts() {
    let nats = TestNats::start_authenticated();
    let subjects = nats.settings.subjects();
    let watcher = Bus::connect_as(&nats.settings.nats, BusRole::Client)
        .await
        .expect("the client user connects");
    let mut alerts = watcher
        .client()
        .subscribe(subjects.alerts_all())
        .await
        .unwrap();
    let mut forecasts = watcher
        .client()
        .subscribe(subjects.forecasts_all())
        .await
        .unwrap();
    round_trip(watcher.client()).await.expect("subscribed");

    let (predictor, mut errors) = connect_watching(&nats.settings, BusRole::Predictor).await;
    predictor
        .publish(subjects.alerts("critical", "web-1"), "forged".into())
        .await
        .unwrap();
    predictor
        .publish(subjects.forecasts("web-1"), "allowed".into())
        .await
        .unwrap();
    predictor.flush().await.unwrap();
    let violation = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the server reports the refused publish")
        .unwrap();
    let alert_subject = subjects.alerts("critical", "web-1");
    assert!(
        violation.to_lowercase().contains("permissions violation")
            && violation.contains(&alert_subject),
        "{violation}"
    );
    let forecast = tokio::time::timeout(
        Duration::from_secs(5),
        futures::StreamExt::next(&mut forecasts),
    )
    .await
    .expect("the allowed forecast arrives")
    .unwrap();
    assert_eq!(&forecast.payload[..], b"allowed");

    let (router, _) = connect_watching(&nats.settings, BusRole::AlertRouter).await;
    router
        .publish(alert_subject.clone(), "genuine".into())
        .await
        .unwrap();
    router.flush().await.unwrap();
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures::StreamExt::next(&mut alerts),
    )
    .await
    .expect("the alert router's alert arrives")
    .unwrap();
    assert_eq!(
        &first.payload[..],
        b"genuine",
        "the predictor's forged alert got through"
    );
    let log = nats.server_log();
    assert!(
        log.contains("Publish Violation") && log.contains(&alert_subject),
        "the server logs the refusal: {log}"
    );
}

/// A client without a user, or with a wrong password, is refused at connect; every role of
/// the settings connects.
#[tokio::test]
async fn anonymous_and_wrong_password_clients_are_refused() {
    let nats = TestNats::start_authenticated();
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats.settings.nats.url.as_str())
        .await;
    let error = anonymous.expect_err("an anonymous client is refused");
    assert_eq!(
        error.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{error}"
    );
    let mut wrong = nats.settings.clone();
    wrong
        .nats
        .users
        .get_mut("client")
        .expect("a client user")
        .password = "guess".into();
    let error = Bus::connect_as(&wrong.nats, BusRole::Client)
        .await
        .expect_err("a wrong password is refused");
    assert!(
        format!("{error:?}").contains("AuthorizationViolation"),
        "{error:?}"
    );
    for role in BusRole::ALL {
        let bus = Bus::connect_as(&nats.settings.nats, role)
            .await
            .unwrap_or_else(|error| panic!("{} connects: {error}", role.key()));
        round_trip(bus.client())
            .await
            .unwrap_or_else(|error| panic!("{} reaches its own inbox: {error}", role.key()));
    }
}

/// The read-only client may not create streams or steer the generator; the admin creates
/// the streams.
#[tokio::test]
async fn only_admin_creates_streams() {
    let nats = TestNats::start_authenticated();
    let client = Bus::connect_as(&nats.settings.nats, BusRole::Client)
        .await
        .unwrap();
    assert!(
        client.ensure_streams().await.is_err(),
        "the client user created a stream"
    );
    let admin = Bus::connect(&nats.settings.nats).await.unwrap();
    admin
        .ensure_streams()
        .await
        .expect("the admin creates the streams");
    // Once they exist, an actor's user sees them (it may read their info, not change them).
    let predictor = Bus::connect_as(&nats.settings.nats, BusRole::Predictor)
        .await
        .unwrap();
    predictor
        .ensure_streams()
        .await
        .expect("the predictor finds the streams");
}
