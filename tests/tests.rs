//! Integration tests: one binary, one module per area, every test against a real
//! nats-server started on a free loopback port (see `util`).

mod util;

mod alerts;
mod auth;
mod bus;
mod cli;
mod cluster;
mod durable;
mod e2e;
mod evaluate;
mod export;
mod fuzz_live;
mod gateway;
mod generator;
mod inputs;
mod offline;
mod partition;
mod pipeline;
mod predictor;
mod risk;
mod stage;
mod window_keeper;
mod wire;
