//! Prometheus metrics, rendered as the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The gateway's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    in_flight: AtomicI64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cancelled: AtomicU64,
    charged_units: Mutex<u128>,
    duration_us_sum: AtomicU64,
    duration_count: AtomicU64,
    first_token_us_sum: AtomicU64,
    first_token_count: AtomicU64,
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }

    /// Marks a generation in flight.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Records a finished generation.
    pub fn generation(&self, prompt_tokens: u32, completion_tokens: u32, elapsed: Duration, cancelled: bool) {
        self.prompt_tokens.fetch_add(u64::from(prompt_tokens), Relaxed);
        self.completion_tokens.fetch_add(u64::from(completion_tokens), Relaxed);
        self.duration_us_sum.fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.duration_count.fetch_add(1, Relaxed);
        if cancelled {
            self.cancelled.fetch_add(1, Relaxed);
        }
    }

    /// Records the time from request to first token.
    pub fn first_token(&self, elapsed: Duration) {
        self.first_token_us_sum.fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.first_token_count.fetch_add(1, Relaxed);
    }

    /// Adds a charge settled on chain.
    pub fn charged(&self, units: u128) {
        if let Ok(mut c) = self.charged_units.lock() {
            *c = c.saturating_add(units);
        }
    }

    /// Completion tokens delivered so far.
    pub fn completion_tokens(&self) -> u64 {
        self.completion_tokens.load(Relaxed)
    }

    /// Generations stopped because the client went away.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Relaxed)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP polylink_gateway_requests_total Requests answered, by route and HTTP status.\n");
        out.push_str("# TYPE polylink_gateway_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "polylink_gateway_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let secs = |us: &AtomicU64| us.load(Relaxed) as f64 / 1e6;
        let charged = self.charged_units.lock().map(|c| c.to_string()).unwrap_or_default();
        let simple: [(&str, &str, &str, String); 9] = [
            (
                "requests_in_flight",
                "gauge",
                "Generations running now.",
                self.in_flight.load(Relaxed).to_string(),
            ),
            (
                "prompt_tokens_total",
                "counter",
                "Prompt tokens processed.",
                self.prompt_tokens.load(Relaxed).to_string(),
            ),
            (
                "completion_tokens_total",
                "counter",
                "Completion tokens delivered.",
                self.completion_tokens().to_string(),
            ),
            (
                "generations_cancelled_total",
                "counter",
                "Generations stopped by a client disconnect.",
                self.cancelled().to_string(),
            ),
            ("charged_units_total", "counter", "Base units charged on chain.", charged),
            (
                "generation_seconds_sum",
                "counter",
                "Wall time of generations.",
                secs(&self.duration_us_sum).to_string(),
            ),
            (
                "generation_seconds_count",
                "counter",
                "Generations timed.",
                self.duration_count.load(Relaxed).to_string(),
            ),
            (
                "time_to_first_token_seconds_sum",
                "counter",
                "Request-to-first-token time.",
                secs(&self.first_token_us_sum).to_string(),
            ),
            (
                "time_to_first_token_seconds_count",
                "counter",
                "First tokens timed.",
                self.first_token_count.load(Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP polylink_gateway_{name} {help}\n# TYPE polylink_gateway_{name} {kind}\npolylink_gateway_{name} {value}"
            );
        }
        out
    }
}
