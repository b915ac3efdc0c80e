//! The window keeper actor (placeholder until the window keeper lands).

use crate::bus::Bus;
use crate::settings::Settings;
use actix::prelude::*;

/// Per-server windows.
pub struct WindowKeeper;

impl Actor for WindowKeeper {
    type Context = Context<Self>;
}

/// Why the window keeper could not start.
#[derive(Debug, thiserror::Error)]
pub enum WindowKeeperError {
    /// Not built yet.
    #[error("the window keeper is not built yet")]
    NotBuilt,
}

/// Builds and starts the window keeper.
///
/// # Errors
/// Always, for now.
pub async fn spawn(
    _settings: &Settings,
    _bus: Bus,
) -> Result<Addr<WindowKeeper>, WindowKeeperError> {
    Err(WindowKeeperError::NotBuilt)
}
