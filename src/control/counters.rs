//! The control plane's counters, for the metrics route (spec §2.7 rule 8):
//! `ringcast_api_requests_total{route,status}`, `ringcast_auth_failures_total{code}`,
//! `ringcast_hook_calls_total{endpoint,kind,outcome}`, `ringcast_hook_seconds{endpoint,kind}`,
//! `ringcast_lifecycle_events_total{endpoint,outcome}` and `ringcast_lifecycle_queue_depth`.
//! Process-wide behind short locks: they count API requests, refused CONNECTs, backend requests
//! and batches, never packets. Plain data: must not depend on sockets, the runtime or `net`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::histogram::Histogram;
use crate::metrics::{Family, Series};

/// What the control plane counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// (route pattern, status) -> requests.
    api: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// code -> refused CONNECTs.
    auth: Mutex<BTreeMap<&'static str, u64>>,
    /// (endpoint, kind, outcome) -> backend requests.
    hooks: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// (endpoint, outcome) -> lifecycle events delivered or dropped.
    lifecycle: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// (endpoint, kind) -> how long its requests took, answered or not.
    hook_seconds: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    /// Lifecycle events and notifications queued now, on every shard.
    queued: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves a map that is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Counters {
    /// One API request answered: its route (the table's pattern, so ids do not make new
    /// series) and status.
    pub(crate) fn api_request(&self, route: &'static str, status: u16) {
        *lock(&self.api).entry((route, status)).or_insert(0) += 1;
    }

    /// One CONNECT (or refresh) refused by the token check, by its code.
    pub(crate) fn auth_failure(&self, code: &'static str) {
        *lock(&self.auth).entry(code).or_insert(0) += 1;
    }

    /// One request to a backend endpoint: what it was for (`connect`, `refresh`, `join`,
    /// `event`, `batch`, `ping`) and how it ended (`ok`, `denied`, `error`, `timeout`,
    /// `unavailable`, `overloaded`).
    pub(crate) fn hook_call(&self, endpoint: &str, kind: &'static str, outcome: &'static str) {
        *lock(&self.hooks)
            .entry((endpoint.to_owned(), kind, outcome))
            .or_insert(0) += 1;
    }

    /// How long one request to a backend endpoint took (for `kind`, as in `hook_call`).
    pub(crate) fn hook_time(&self, endpoint: &str, kind: &'static str, took: Duration) {
        lock(&self.hook_seconds)
            .entry((endpoint.to_owned(), kind))
            .or_default()
            .observe(took);
    }

    /// `count` events more (or fewer) wait in the lifecycle queues.
    pub(crate) fn queued(&self, more: bool, count: u64) {
        if more {
            self.queued.fetch_add(count, Ordering::Relaxed);
        } else {
            // Never below zero: the counts come from one shard's own queue each.
            let _ = self
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    Some(now.saturating_sub(count))
                });
        }
    }

    /// `count` lifecycle events `delivered` to an endpoint, or `dropped` (queue full, retries
    /// exhausted).
    pub(crate) fn lifecycle_events(&self, endpoint: &str, outcome: &'static str, count: u64) {
        *lock(&self.lifecycle)
            .entry((endpoint.to_owned(), outcome))
            .or_insert(0) += count;
    }

    /// The families as a scrape reports them.
    pub(crate) fn families(&self) -> Vec<Family> {
        let hooks = lock(&self.hooks)
            .iter()
            .map(|((endpoint, kind, outcome), count)| {
                (
                    vec![
                        ("endpoint", endpoint.clone()),
                        ("kind", (*kind).to_owned()),
                        ("outcome", (*outcome).to_owned()),
                    ],
                    *count,
                )
            })
            .collect();
        let lifecycle = lock(&self.lifecycle)
            .iter()
            .map(|((endpoint, outcome), count)| {
                (
                    vec![
                        ("endpoint", endpoint.clone()),
                        ("outcome", (*outcome).to_owned()),
                    ],
                    *count,
                )
            })
            .collect();
        let api = lock(&self.api)
            .iter()
            .map(|((route, status), count)| {
                (
                    vec![
                        ("route", (*route).to_owned()),
                        ("status", status.to_string()),
                    ],
                    *count,
                )
            })
            .collect();
        let auth = lock(&self.auth)
            .iter()
            .map(|(code, count)| (vec![("code", (*code).to_owned())], *count))
            .collect();
        let hook_seconds = lock(&self.hook_seconds)
            .iter()
            .map(|((endpoint, kind), histogram)| {
                (
                    vec![("endpoint", endpoint.clone()), ("kind", (*kind).to_owned())],
                    *histogram,
                )
            })
            .collect();
        vec![
            Family {
                name: "api_requests",
                help: "HTTP API requests answered, by route and status.",
                series: Series::Counters(api),
            },
            Family {
                name: "auth_failures",
                help: "CONNECTs refused by the token check, by code.",
                series: Series::Counters(auth),
            },
            Family {
                name: "hook_calls",
                help: "Requests to backend endpoints, by endpoint, kind and outcome.",
                series: Series::Counters(hooks),
            },
            Family {
                name: "hook_seconds",
                help: "How long requests to backend endpoints took, answered or not, by endpoint and kind.",
                series: Series::Histograms(hook_seconds),
            },
            Family {
                name: "lifecycle_events",
                help: "Lifecycle events delivered to or dropped for an endpoint.",
                series: Series::Counters(lifecycle),
            },
            Family {
                name: "lifecycle_queue_depth",
                help: "Lifecycle events and notifications waiting to be delivered, on every shard.",
                series: Series::Gauges(vec![(Vec::new(), self.queued.load(Ordering::Relaxed))]),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_failures_are_counted_by_their_labels() {
        let counters = Counters::default();
        counters.api_request("/v1/emit", 200);
        counters.api_request("/v1/emit", 200);
        counters.api_request("/v1/emit", 401);
        counters.auth_failure("token_expired");
        let families = counters.families();
        assert_eq!(
            families[0].series,
            Series::Counters(vec![
                (
                    vec![
                        ("route", "/v1/emit".to_owned()),
                        ("status", "200".to_owned())
                    ],
                    2
                ),
                (
                    vec![
                        ("route", "/v1/emit".to_owned()),
                        ("status", "401".to_owned())
                    ],
                    1
                ),
            ])
        );
        assert_eq!(
            families[1].series,
            Series::Counters(vec![(vec![("code", "token_expired".to_owned())], 1)])
        );
        counters.queued(true, 5);
        counters.queued(false, 7);
        let depth = counters.families().pop().map(|family| family.series);
        assert_eq!(depth, Some(Series::Gauges(vec![(Vec::new(), 0)])));
    }
}
