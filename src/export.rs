//! Training data export (placeholder until the exporter lands).

/// Options of `fleetcast export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Hours of simulated history.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
}

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Not built yet.
    #[error("the exporter is not built yet")]
    NotBuilt,
}

/// Runs the export.
///
/// # Errors
/// Always, for now.
pub fn run(_args: &ExportArgs) -> Result<(), ExportError> {
    Err(ExportError::NotBuilt)
}
