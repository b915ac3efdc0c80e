//! Rate-limited logging: a burst of the same trouble (ten thousand bad samples, a stream
//! refusing every message) writes one line per interval, saying how many it held back.

use std::time::{Duration, Instant};

/// The usual interval between two lines about the same trouble.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides when a repeated event may be logged again, and counts what it held back.
///
/// ```ignore
/// # use fleetcast::ratelog::RateLimited;
/// let mut log = RateLimited::every(std::time::Duration::from_secs(10));
/// for reason in ["a", "b", "c"] {
///     match log.check() {
///         Some(held_back) => tracing::warn!(reason, held_back, "input rejected"),
///         None => tracing::debug!(reason, "input rejected"),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimited {
    /// At most one line per `interval`.
    pub const fn every(interval: Duration) -> RateLimited {
        RateLimited {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(held back since the last line)` when a line is due now (the caller logs it at
    /// its level with its fields), `None` when this one is held back (log it at debug, if
    /// at all).
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

impl Default for RateLimited {
    fn default() -> Self {
        RateLimited::every(LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first event logs, the next ones within the interval are held back and counted in
    /// the next line.
    #[test]
    fn holds_back_within_the_interval() {
        let mut log = RateLimited::every(Duration::from_secs(3600));
        assert_eq!(log.check(), Some(0));
        assert_eq!(log.check(), None);
        assert_eq!(log.check(), None);
        log.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(log.check(), Some(2));
    }
}
