//! How many requests may be in flight: a fixed number, or an adaptive limit in the manner of
//! Vector's adaptive request concurrency (ARC), itself after TCP congestion control.
//!
//! The adaptive limit starts at 1 and is adjusted once per observation window (one past mean
//! round-trip time, at least [`MIN_WINDOW`]):
//! - **additive increase**: when the window's requests filled the limit and their mean RTT was no
//!   worse than the long-run mean, the limit grows by one;
//! - **multiplicative decrease**: when the store pushed back (a transient failure: connection
//!   refused, 5xx, 429) or the window's mean RTT rose above the long-run mean by more than
//!   [`DEVIATION_SCALE`] deviations, the limit is multiplied by [`DECREASE_RATIO`].
//!
//! The long-run mean and deviation are exponentially weighted ([`EWMA_ALPHA`]). The limit stays
//! within `1..=MAX_CONCURRENCY`.

use std::time::Duration;

use tokio::time::Instant;

use super::config::{Concurrency, MAX_CONCURRENCY};

/// The shortest observation window, so very fast stores are not adjusted per request.
pub const MIN_WINDOW: Duration = Duration::from_millis(10);
/// The weight of a new window in the long-run RTT mean and deviation.
pub const EWMA_ALPHA: f64 = 0.4;
/// How many deviations above the mean count as the store slowing down.
pub const DEVIATION_SCALE: f64 = 2.5;
/// The factor applied to the limit on back-pressure.
pub const DECREASE_RATIO: f64 = 0.9;

/// What one attempt told about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The store answered (accepted, or rejected the data for good).
    Answered,
    /// The store failed or pushed back; a transient error.
    BackPressure,
}

/// The in-flight count and limit of one driver.
#[derive(Debug)]
pub struct Controller {
    limit: usize,
    in_flight: usize,
    adaptive: Option<Adaptive>,
}

#[derive(Debug)]
struct Adaptive {
    past_rtt: Option<f64>,
    past_deviation: f64,
    window_start: Instant,
    window_sum: f64,
    window_count: u32,
    window_back_pressure: bool,
    window_saturated: bool,
}

impl Controller {
    /// A controller for `concurrency`, starting now.
    pub fn new(concurrency: Concurrency, now: Instant) -> Self {
        match concurrency {
            Concurrency::Fixed(limit) => Controller {
                limit: limit.clamp(1, MAX_CONCURRENCY),
                in_flight: 0,
                adaptive: None,
            },
            Concurrency::Adaptive => Controller {
                limit: 1,
                in_flight: 0,
                adaptive: Some(Adaptive {
                    past_rtt: None,
                    past_deviation: 0.0,
                    window_start: now,
                    window_sum: 0.0,
                    window_count: 0,
                    window_back_pressure: false,
                    window_saturated: false,
                }),
            },
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether another request may start.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.limit
    }

    /// A request started.
    pub fn started(&mut self) {
        self.in_flight += 1;
        if let Some(adaptive) = &mut self.adaptive
            && self.in_flight >= self.limit
        {
            adaptive.window_saturated = true;
        }
    }

    /// A request finished (after all its attempts).
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// One attempt took `rtt` and gave `signal`.
    pub fn observe(&mut self, now: Instant, rtt: Duration, signal: Signal) {
        let Some(adaptive) = &mut self.adaptive else {
            return;
        };
        match signal {
            Signal::Answered => {
                adaptive.window_sum += rtt.as_secs_f64();
                adaptive.window_count += 1;
            }
            Signal::BackPressure => adaptive.window_back_pressure = true,
        }
        let window = adaptive
            .past_rtt
            .map_or(MIN_WINDOW, Duration::from_secs_f64)
            .max(MIN_WINDOW);
        if now.duration_since(adaptive.window_start) < window {
            return;
        }
        let mut limit = self.limit;
        let current = (adaptive.window_count > 0)
            .then(|| adaptive.window_sum / f64::from(adaptive.window_count));
        if adaptive.window_back_pressure {
            limit = decrease(limit);
        } else if let Some(current) = current {
            match adaptive.past_rtt {
                Some(past) if current > past + DEVIATION_SCALE * adaptive.past_deviation => {
                    limit = decrease(limit);
                }
                Some(past) if current <= past && adaptive.window_saturated => limit += 1,
                // The first window only sets the baseline; growing needs a saturated window.
                None if adaptive.window_saturated => limit += 1,
                _ => {}
            }
        }
        if let Some(current) = current {
            match adaptive.past_rtt {
                None => adaptive.past_rtt = Some(current),
                Some(past) => {
                    let mean = past + EWMA_ALPHA * (current - past);
                    adaptive.past_deviation +=
                        EWMA_ALPHA * ((current - past).abs() - adaptive.past_deviation);
                    adaptive.past_rtt = Some(mean);
                }
            }
        }
        self.limit = limit.clamp(1, MAX_CONCURRENCY);
        adaptive.window_start = now;
        adaptive.window_sum = 0.0;
        adaptive.window_count = 0;
        adaptive.window_back_pressure = false;
        adaptive.window_saturated = self.in_flight >= self.limit;
    }
}

fn decrease(limit: usize) -> usize {
    // Truncation is the intent: 1 stays 1, 10 becomes 9.
    ((limit as f64 * DECREASE_RATIO) as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_limit_is_the_configured_number() {
        let mut controller = Controller::new(Concurrency::Fixed(3), Instant::now());
        for _ in 0..3 {
            assert!(controller.has_room());
            controller.started();
        }
        assert!(!controller.has_room());
        controller.observe(Instant::now(), Duration::from_secs(9), Signal::BackPressure);
        assert_eq!(controller.limit(), 3);
        controller.finished();
        assert!(controller.has_room());
    }

    /// A store that answers in 10 ms up to 8 concurrent requests and slows down linearly above:
    /// the limit climbs from 1 and settles around 8; back-pressure then brings it down to 1.
    #[test]
    fn adaptive_limit_finds_the_store_capacity_and_backs_off() {
        let start = Instant::now();
        let mut now = start;
        let mut controller = Controller::new(Concurrency::Adaptive, start);
        assert_eq!(controller.limit(), 1);
        let mut limits = Vec::new();
        for _ in 0..3000 {
            // Saturate: run `limit` requests at once, each taking the store's latency.
            let concurrent = controller.limit();
            for _ in 0..concurrent {
                controller.started();
            }
            let rtt = Duration::from_millis(10) * (concurrent.max(8) as u32) / 8;
            now += rtt;
            for _ in 0..concurrent {
                controller.observe(now, rtt, Signal::Answered);
                controller.finished();
            }
            limits.push(controller.limit());
        }
        let tail = &limits[limits.len() - 500..];
        let max = *tail.iter().max().unwrap();
        let min = *tail.iter().min().unwrap();
        assert!(
            (6..=14).contains(&max) && min >= 4,
            "settled between {min} and {max}"
        );
        assert!(limits.iter().all(|&l| (1..=MAX_CONCURRENCY).contains(&l)));

        for _ in 0..100 {
            controller.started();
            now += Duration::from_millis(20);
            controller.observe(now, Duration::from_millis(20), Signal::BackPressure);
            controller.finished();
        }
        assert_eq!(controller.limit(), 1);
    }
}
