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
//! | [`actors::risk_scorer`] | `metrics.>` (`MetricSample`), `forecasts.>` (`Forecast`), through durable consumers | `risk.<server>` (`RiskScore`), `summary.fleet` (`FleetSummary`), `rejected.risk_scorer` (`Rejection`) |
//! | [`actors::alert_router`] | `risk.>` (`RiskScore`), `forecasts.>` (`Forecast`), through durable consumers | `alerts.<severity>.<server>` (`AlertEvent`), `rejected.alert_router` (`Rejection`) |
//! | [`actors::gateway`] | `metrics.>`, `forecasts.>`, `risk.>`, `alerts.>`, `summary.fleet`, `status.>`; `$SRV.INFO`/`$SRV.STATS` replies | HTTP (the original's API, `/api/v1`, SSE, `/metrics`, the dashboard); `metrics.<server>` (`POST /feed/data`), `rejected.gateway`, `control.scenario` requests |
//! | [`actors::node_exporter`] | node_exporter pages over HTTP (targets and `file_sd` files) | `metrics.<server>` (`MetricSample`), `status.node_exporter` (`TargetHealth`), `rejected.node_exporter` (`Rejection`) |
//! | [`actors::remote_write`] | Prometheus remote-write requests (HTTP POST, snappy protobuf) | `metrics.<server>` (`MetricSample`), `status.remote_write` (`TargetHealth`), `rejected.remote_write` (`Rejection`) |
//!
//! Every stage instance also serves `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` as the NATS
//! micro service `fleetcast-<stage>`, with a `report` endpoint on
//! `control.report.<stage>.<id>` (`StageReport`).
//!
//! Every actor is built on the [stage toolkit](actors::stage) (one counters type, one
//! rejection type, one bounded outbox, rate-limited logs, a NATS micro service per instance,
//! a drain on stop); all are started by [`pipeline`], the one start-up path of the binary,
//! the end-to-end tests and the benches.
//!
//! The two input actors share [`node_series`], which turns node_exporter series into
//! the catalog's metrics. Supporting modules: [`sim`] (the simulation engine the generator and [`export`] share),
//! [`checks`] (payload checks more than one stage applies), [`samples`] (the sample decoding
//! and ingest rule the window keeper and the gateway share), [`catalog`] (metrics and
//! profiles), [`model`] (the model contract and the ONNX session), [`offline`] (`forecast`
//! and `backtest` on files), [`settings`] (the TOML file, validated into typed settings), [`bus`] (the
//! connection, streams and a private nats-server), [`subjects`] (every subject, built and
//! parsed), [`wire`] (every payload), [`export`] (training data as Parquet), [`tail`]
//! (decode any subject as JSON lines), [`status`] (`fleetcast status`), [`levels`] (the one
//! alert scale), [`ratelog`] (rate-limited logging).

pub mod actors;
pub mod bus;
pub mod catalog;
pub mod checks;
pub mod evaluate;
pub mod export;
pub mod levels;
pub mod model;
pub mod node_series;
pub mod offline;
pub mod pipeline;
pub mod ratelog;
pub mod samples;
pub mod settings;
pub mod sim;
pub mod status;
pub mod subjects;
pub mod tail;
#[cfg(test)]
mod testing;
pub mod wire;

pub use pipeline::run;
