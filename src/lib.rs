//! fleetcast: predictive monitoring for server fleets.
//!
//! Metrics stream in on NATS; a Temporal Fusion Transformer on ONNX Runtime forecasts every
//! server's next 8 hours; a risk scorer and an alert router turn that into alerts before the
//! trouble happens. Every stage is an actix actor that talks to the others only through
//! MessagePack messages on NATS subjects (see [`subjects`] and [`wire`]), so each stage scales
//! and fails on its own.
//!
//! # Map
//!
//! | actor | consumes | publishes |
//! |---|---|---|
//! | [`actors::generator`] | `control.scenario` (`ScenarioRequest`, replies `ScenarioReply`) | `metrics.<server>` (`MetricSample`), `rejected.generator` (`Rejection`) |
//! | [`actors::window_keeper`] | `metrics.>` (`MetricSample`) | `jobs.predict.<server>` (`PredictJob`), `rejected.window_keeper` (`Rejection`), `status.window_keeper` (`StageStatus`) |
//! | [`actors::predictor`] | `jobs.predict.>` (`PredictJob`, JetStream work queue), `control.model.load` (`ModelLoadRequest`) | `forecasts.<server>` (`Forecast`), `rejected.predictor` (`Rejection`) |
//! | [`actors::risk_scorer`] | `metrics.>` (`MetricSample`), `forecasts.>` (`Forecast`) | `risk.<server>` (`RiskScore`), `summary.fleet` (`FleetSummary`), `rejected.risk_scorer` (`Rejection`) |
//! | [`actors::alert_router`] | `risk.>` (`RiskScore`), `forecasts.>` (`Forecast`) | `alerts.<severity>.<server>` (`AlertEvent`), `rejected.alert_router` (`Rejection`) |
//! | [`actors::gateway`] | `metrics.>`, `forecasts.>`, `risk.>`, `alerts.>`, `summary.fleet`, `status.>`; `$SRV.INFO`/`$SRV.STATS` replies | HTTP (the original's API, `/api/v1`, SSE, `/metrics`, the dashboard); `metrics.<server>` (`POST /feed/data`), `rejected.gateway`, `control.scenario` requests |
//! | [`actors::node_exporter`] | node_exporter pages over HTTP (targets and `file_sd` files) | `metrics.<server>` (`MetricSample`), `status.node_exporter` (`TargetHealth`), `rejected.node_exporter` (`Rejection`) |
//! | [`actors::remote_write`] | Prometheus remote-write requests (HTTP POST, snappy protobuf) | `metrics.<server>` (`MetricSample`), `status.remote_write` (`TargetHealth`), `rejected.remote_write` (`Rejection`) |
//!
//! The two input actors share [`actors::node_series`], which turns node_exporter series into
//! the catalog's metrics. Supporting modules: [`catalog`] (metrics and profiles), [`settings`] (the TOML file and
//! its validation), [`bus`] (the connection, streams and a private nats-server), [`export`]
//! (training data as Parquet), [`tail`] (decode any subject as JSON lines), [`levels`] (the
//! one alert scale).

pub mod actors;
pub mod bus;
pub mod catalog;
pub mod export;
pub mod levels;
pub mod model;
pub mod offline;
pub mod settings;
pub mod subjects;
pub mod tail;
pub mod wire;
