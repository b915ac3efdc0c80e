//! `fleetcast evaluate alerts`: fleetcast's alerts measured against the simulation's ground
//! truth ([`crate::sim::labels`]), side by side with two baselines on the same samples.
//!
//! [`score`] holds the scoring (pure functions over labels and alert changes),
//! [`baselines`] the static-threshold and `predict_linear` rules, [`pipeline`] fleetcast's
//! own stages chained in-process, [`harness`] the run that feeds a simulated stretch to every
//! detector and prints the table.

pub mod baselines;
pub mod harness;
pub mod pipeline;
pub mod score;

pub use baselines::{RuleBaseline, Signal};
pub use harness::{Detector, EvaluateArgs, EvaluateError, Report, evaluate};
pub use pipeline::PipelineDetector;
pub use score::{Alert, AlertChange, ScoreParams, Scores, alerts_at, score};
