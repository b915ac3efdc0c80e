//! Integration tests: one binary, one module per area, every test against a real
//! nats-server started on a free loopback port (see `util`).

mod util;

mod alerts;
mod bus;
mod e2e;
mod export;
mod gateway;
mod generator;
mod inputs;
mod offline;
mod predictor;
mod risk;
mod window_keeper;
