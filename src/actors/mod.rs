//! The pipeline's stages, one module per actor, and [`stage`], the toolkit they share. Each
//! actor module opens with what it consumes and publishes, the state it keeps and how it
//! fails, and offers an async `spawn(settings, bus)` that connects and validates everything
//! that can fail before the actor starts. No actor module imports another: what two stages
//! share lives in [`stage`], [`crate::checks`], [`crate::samples`], [`crate::node_series`],
//! [`crate::subjects`] or [`crate::wire`].

pub mod alert_router;
pub mod gateway;
pub mod generator;
pub mod node_exporter;
pub mod predictor;
pub mod remote_write;
pub mod risk_scorer;
pub mod stage;
pub mod window_keeper;
