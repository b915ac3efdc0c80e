//! The generator actor (placeholder until the generator lands).

use crate::bus::Bus;
use crate::settings::Settings;
use actix::prelude::*;

/// The synthetic fleet.
pub struct Generator;

impl Actor for Generator {
    type Context = Context<Self>;
}

/// Why the generator could not start.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// Not built yet.
    #[error("the generator is not built yet")]
    NotBuilt,
}

/// Builds and starts the generator.
///
/// # Errors
/// Always, for now.
pub async fn spawn(_settings: &Settings, _bus: Bus) -> Result<Addr<Generator>, GeneratorError> {
    Err(GeneratorError::NotBuilt)
}
