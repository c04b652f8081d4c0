//! The control plane's counters, for the metrics route (spec §2.7 rule 8):
//! `ringcast_api_requests_total{route,status}`, `ringcast_auth_failures_total{code}`,
//! `ringcast_hook_calls_total{endpoint,kind,outcome}` and
//! `ringcast_lifecycle_events_total{endpoint,outcome}`. Process-wide behind short locks: they
//! count API requests, refused CONNECTs, backend requests and batches, never packets. Plain data: must not depend on sockets, the runtime or `net`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::metrics::CounterFamily;

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

    /// `count` lifecycle events `delivered` to an endpoint, or `dropped` (queue full, retries
    /// exhausted).
    pub(crate) fn lifecycle_events(&self, endpoint: &str, outcome: &'static str, count: u64) {
        *lock(&self.lifecycle)
            .entry((endpoint.to_owned(), outcome))
            .or_insert(0) += count;
    }

    /// The families as a scrape reports them.
    pub(crate) fn families(&self) -> Vec<CounterFamily> {
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
        vec![
            CounterFamily {
                name: "api_requests",
                help: "HTTP API requests answered, by route and status.",
                series: api,
            },
            CounterFamily {
                name: "auth_failures",
                help: "CONNECTs refused by the token check, by code.",
                series: auth,
            },
            CounterFamily {
                name: "hook_calls",
                help: "Requests to backend endpoints, by endpoint, kind and outcome.",
                series: hooks,
            },
            CounterFamily {
                name: "lifecycle_events",
                help: "Lifecycle events delivered to or dropped for an endpoint.",
                series: lifecycle,
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
            vec![
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
            ]
        );
        assert_eq!(
            families[1].series,
            vec![(vec![("code", "token_expired".to_owned())], 1)]
        );
    }
}
