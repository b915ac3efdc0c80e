//! One counters type for every stage: the same names everywhere, readable from any thread
//! (the actor, its outbox task, its NATS micro service, a test) without asking the actor.
//!
//! | name | meaning |
//! |---|---|
//! | `received` | inputs taken off the bus (samples, forecasts, scores, jobs, requests) |
//! | `accepted` | inputs that passed the stage's checks and were used |
//! | `rejected` | inputs refused with a reason, also per kind as `rejected.<kind>` |
//! | `published` | messages the bus took: a core message once the client sent it, a stream message once the stream acknowledged it |
//! | `publish_errors` | messages that did not go out: a failed send, or a stream that did not store it |
//! | `outbox_full` | times the stage found its outbox full and waited (back-pressure) |
//! | `consumer_lag` | inputs waiting for the stage: a JetStream consumer's pending count, or what its subscriptions received and it has not taken yet (see [`Intake`](super::Intake)) |
//! | extras | the actor's own, declared when it builds its counters (`steps`, `batches`, ...) |

use crate::wire::RejectKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A snapshot of a stage's counters (see the module documentation for each name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Inputs taken off the bus.
    pub received: u64,
    /// Inputs used.
    pub accepted: u64,
    /// Inputs refused.
    pub rejected: u64,
    /// Refusals per kind (snake_case kind name), only kinds seen.
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// Messages the bus took.
    pub published: u64,
    /// Messages that did not go out.
    pub publish_errors: u64,
    /// Times the outbox was full.
    pub outbox_full: u64,
    /// Inputs waiting for the stage.
    pub consumer_lag: u64,
    /// The actor's own counters.
    pub extras: BTreeMap<String, u64>,
}

impl Counters {
    /// The counters as one flat map (`rejected.<kind>` for the kinds, extras by their own
    /// names), as a `StageStatus` carries them.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::from([
            ("received".to_string(), self.received),
            ("accepted".to_string(), self.accepted),
            ("rejected".to_string(), self.rejected),
            ("published".to_string(), self.published),
            ("publish_errors".to_string(), self.publish_errors),
            ("outbox_full".to_string(), self.outbox_full),
            ("consumer_lag".to_string(), self.consumer_lag),
        ]);
        for (kind, count) in &self.rejected_by_kind {
            map.insert(format!("rejected.{kind}"), *count);
        }
        for (name, count) in &self.extras {
            map.insert(name.clone(), *count);
        }
        map
    }

    /// The value of extra counter `name` (0 when the stage has none by that name).
    pub fn extra(&self, name: &str) -> u64 {
        self.extras.get(name).copied().unwrap_or(0)
    }
}

/// The live counters of one stage instance: cheap to clone (one shared allocation), updated
/// from any thread with relaxed atomics, and awaitable ([`StageCounters::wait_until`]) so
/// tests wait on events, not on the clock.
#[derive(Debug, Clone)]
pub struct StageCounters {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    received: AtomicU64,
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectKind::ALL.len()],
    published: AtomicU64,
    publish_errors: AtomicU64,
    outbox_full: AtomicU64,
    lag: AtomicU64,
    extras: Vec<(&'static str, AtomicU64)>,
    /// Woken on every change while someone waits; `waiters` keeps the counting paths to one
    /// atomic load when nobody does.
    changed: tokio::sync::Notify,
    waiters: AtomicUsize,
}

/// One of a stage's own counters, as a handle that adds to it.
#[derive(Debug, Clone)]
pub struct Extra {
    inner: Arc<Inner>,
    index: usize,
}

impl Extra {
    /// Adds `count`.
    pub fn add(&self, count: u64) {
        if count > 0 {
            self.inner.extras[self.index]
                .1
                .fetch_add(count, Ordering::SeqCst);
            self.inner.touch();
        }
    }

    /// Adds one.
    pub fn incr(&self) {
        self.add(1);
    }
}

impl Default for StageCounters {
    fn default() -> Self {
        StageCounters::new(&[])
    }
}

impl Inner {
    fn touch(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    fn add(&self, counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::SeqCst);
        self.touch();
    }
}

impl StageCounters {
    /// Counters with the standard names plus `extras` (the actor's own, all starting at 0).
    pub fn new(extras: &[&'static str]) -> StageCounters {
        StageCounters {
            inner: Arc::new(Inner {
                received: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                rejected: std::array::from_fn(|_| AtomicU64::new(0)),
                published: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                outbox_full: AtomicU64::new(0),
                lag: AtomicU64::new(0),
                extras: extras
                    .iter()
                    .map(|&name| (name, AtomicU64::new(0)))
                    .collect(),
                changed: tokio::sync::Notify::new(),
                waiters: AtomicUsize::new(0),
            }),
        }
    }

    /// The handle of extra counter `name`.
    ///
    /// # Panics
    /// When `name` was not declared in [`StageCounters::new`]: a programming error.
    pub fn extra(&self, name: &str) -> Extra {
        let index = self
            .inner
            .extras
            .iter()
            .position(|(declared, _)| *declared == name)
            .unwrap_or_else(|| panic!("counter `{name}` was not declared"));
        Extra {
            inner: self.inner.clone(),
            index,
        }
    }

    /// Counts one input taken off the bus.
    pub fn received(&self) {
        self.inner.add(&self.inner.received, 1);
    }

    /// Counts `count` inputs taken off the bus.
    pub fn received_many(&self, count: u64) {
        self.inner.add(&self.inner.received, count);
    }

    /// Counts one input used.
    pub fn accepted(&self) {
        self.inner.add(&self.inner.accepted, 1);
    }

    /// Counts one input refused as `kind`.
    pub fn rejected(&self, kind: RejectKind) {
        self.inner.add(&self.inner.rejected[kind.index()], 1);
    }

    /// Counts `count` inputs refused as `kind`.
    pub fn rejected_many(&self, kind: RejectKind, count: u64) {
        if count > 0 {
            self.inner.add(&self.inner.rejected[kind.index()], count);
        }
    }

    /// Counts `count` inputs used.
    pub fn accepted_many(&self, count: u64) {
        if count > 0 {
            self.inner.add(&self.inner.accepted, count);
        }
    }

    /// Counts `count` messages the bus took.
    pub fn published(&self, count: u64) {
        if count > 0 {
            self.inner.add(&self.inner.published, count);
        }
    }

    /// Counts `count` messages that did not go out.
    pub fn publish_errors(&self, count: u64) {
        if count > 0 {
            self.inner.add(&self.inner.publish_errors, count);
        }
    }

    /// Counts one wait for room in the outbox.
    pub fn outbox_full(&self) {
        self.inner.add(&self.inner.outbox_full, 1);
    }

    /// Sets the consumer lag: a JetStream consumer's pending count (from the metadata of
    /// the message just taken), or what an [`Intake`](super::Intake)'s streams hold.
    pub fn set_lag(&self, waiting: u64) {
        self.inner.lag.store(waiting, Ordering::Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> Counters {
        let inner = &*self.inner;
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        let received = load(&inner.received);
        let rejected_by_kind: BTreeMap<String, u64> = RejectKind::ALL
            .iter()
            .map(|kind| (kind.name().to_string(), load(&inner.rejected[kind.index()])))
            .filter(|(_, count)| *count > 0)
            .collect();
        let consumer_lag = inner.lag.load(Ordering::Relaxed);
        Counters {
            received,
            accepted: load(&inner.accepted),
            rejected: rejected_by_kind.values().sum(),
            rejected_by_kind,
            published: load(&inner.published),
            publish_errors: load(&inner.publish_errors),
            outbox_full: load(&inner.outbox_full),
            consumer_lag,
            extras: inner
                .extras
                .iter()
                .map(|(name, counter)| (name.to_string(), load(counter)))
                .collect(),
        }
    }

    /// Waits until `done` holds for the counters, at most `timeout`; returns the counters
    /// that satisfied it, or the last ones seen when time ran out. Woken by every change, so
    /// it returns as soon as the condition holds.
    ///
    /// # Errors
    /// The last snapshot, when `timeout` passed first.
    pub async fn wait_until(
        &self,
        done: impl Fn(&Counters) -> bool,
        timeout: Duration,
    ) -> Result<Counters, Counters> {
        let inner = &*self.inner;
        inner.waiters.fetch_add(1, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = loop {
            let changed = inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let counters = self.snapshot();
            if done(&counters) {
                break Ok(counters);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break Err(self.snapshot());
            }
        };
        inner.waiters.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard counters, kinds and extras show in the snapshot and the flat map.
    #[test]
    fn snapshot_and_map_name_every_counter() {
        let counters = StageCounters::new(&["steps"]);
        counters.received_many(3);
        counters.accepted();
        counters.rejected(RejectKind::BadServer);
        counters.rejected(RejectKind::BadServer);
        counters.published(5);
        counters.publish_errors(1);
        counters.extra("steps").add(7);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.received, 3);
        assert_eq!(snapshot.rejected, 2);
        assert_eq!(snapshot.rejected_by_kind["bad_server"], 2);
        assert_eq!(snapshot.extra("steps"), 7);
        let map = snapshot.to_map();
        assert_eq!(map["rejected.bad_server"], 2);
        assert_eq!(map["published"], 5);
        assert_eq!(map["publish_errors"], 1);
        assert_eq!(map["steps"], 7);
    }

    /// A waiter wakes on the change that satisfies it, and gives up with the last values.
    #[tokio::test]
    async fn wait_until_wakes_on_a_change() {
        let counters = StageCounters::new(&[]);
        let writer = counters.clone();
        let waiting = tokio::spawn(async move {
            counters
                .wait_until(|c| c.published >= 2, Duration::from_secs(30))
                .await
        });
        tokio::task::yield_now().await;
        writer.published(1);
        writer.published(1);
        assert_eq!(waiting.await.unwrap().unwrap().published, 2);
        let timed_out = writer
            .wait_until(|c| c.published >= 3, Duration::from_millis(1))
            .await;
        assert_eq!(timed_out.unwrap_err().published, 2);
    }

    /// An undeclared extra is a programming error.
    #[test]
    #[should_panic(expected = "not declared")]
    fn undeclared_extra_panics() {
        StageCounters::new(&["steps"]).extra("batches");
    }
}
