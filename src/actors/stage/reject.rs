//! The one rejection type: what was wrong with an input, which server it was about, and
//! why in words. A stage's checks return it; [`Stage::reject`](super::Stage::reject)
//! counts it by kind, logs it (rate-limited) and publishes it on `rejected.<stage>`.

use crate::wire::{DecodeError, RejectKind};

/// An input a stage refuses: the kind (machine-readable), the server when it could be read,
/// and the reason naming the field and value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Reject {
    /// The server the input was about, when known.
    pub server: Option<String>,
    /// Machine-readable reason.
    pub kind: RejectKind,
    /// The reason in words.
    pub reason: String,
}

impl Reject {
    /// A refusal of `kind` because of `reason`, server not yet known.
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Reject {
        Reject {
            server: None,
            kind,
            reason: reason.into(),
        }
    }

    /// The same refusal, about `server`.
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Reject {
        self.server = Some(server.into());
        self
    }

    /// The same refusal, about `server` unless it already names one (e.g. the subject's
    /// server for an input whose own server field could not be trusted).
    #[must_use]
    pub fn or_server(mut self, server: Option<&str>) -> Reject {
        if self.server.is_none() {
            self.server = server.map(str::to_string);
        }
        self
    }
}

impl From<DecodeError> for Reject {
    fn from(error: DecodeError) -> Reject {
        Reject::new(error.kind(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decode error keeps its kind; the subject's server fills in only a missing one.
    #[test]
    fn decode_errors_and_servers() {
        let error = crate::wire::decode::<crate::wire::MetricSample>(b"\xc1").unwrap_err();
        let reject = Reject::from(error).or_server(Some("ppdb001"));
        assert_eq!(reject.kind, RejectKind::Undecodable);
        assert_eq!(reject.server.as_deref(), Some("ppdb001"));
        let named = Reject::new(RejectKind::BadServer, "x")
            .with_server("a")
            .or_server(Some("b"));
        assert_eq!(named.server.as_deref(), Some("a"));
    }
}
