//! Rate-limited warnings: a source that fails over and over (a polled API that is down, a flood of
//! refused connections) logs one line per interval, saying how many were left out, instead of
//! one per failure. Every failure is still counted in metrics by the caller.

use std::time::Duration;

use tokio::time::Instant;

/// How often a throttled warning is logged at most, by default.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides when a repeated warning is logged.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// A throttle logging at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence. Returns `Some(left_out)` when this one should be logged, with the
    /// number of occurrences left out since the last logged one; `None` when it should not.
    pub fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(DEFAULT_LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn logs_once_per_interval_with_the_count_left_out() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.hit(), Some(0));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(throttle.hit(), Some(2));
        assert_eq!(throttle.hit(), None);
    }
}
