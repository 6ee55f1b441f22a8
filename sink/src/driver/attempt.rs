//! One request's life: its attempts, the waits between them (backoff with jitter, `Retry-After`,
//! the short reconnect delay) and when it gives up.

use super::*;

/// One request, with its retries.
pub(super) async fn execute(
    shared: Arc<Shared>,
    mut handle: Box<dyn Sink>,
    request: Request,
) -> Finished {
    let result = attempt_until_done(&shared, handle.as_mut(), &request).await;
    Finished {
        handle,
        request,
        result,
    }
}

pub(super) async fn attempt_until_done(
    shared: &Shared,
    handle: &mut dyn Sink,
    request: &Request,
) -> Result<(), Failure> {
    let chunks: Vec<&[Event]> = request.parts.iter().map(Part::events).collect();
    let mut rng = Jitter::new();
    let mut retries: u32 = 0;
    let mut refused_in_a_row: u32 = 0;
    let mut give_up = shared.give_up_when_refused.subscribe();
    loop {
        let started = Instant::now();
        shared.stats.0.attempts.fetch_add(1, Ordering::Relaxed);
        let result = handle.write_chunks(&chunks).await;
        let now = Instant::now();
        let signal = match &result {
            Err(error) if error.is_transient() => Signal::BackPressure,
            _ => Signal::Answered,
        };
        shared
            .controller()
            .observe(now, now.duration_since(started), signal);
        let error = match result {
            Ok(()) => {
                shared
                    .stats
                    .0
                    .bytes_written
                    .fetch_add(handle.bytes_written(), Ordering::Relaxed);
                shared.succeeded();
                return Ok(());
            }
            Err(error) if error.is_transient() || matches!(error, SinkError::Refused(_)) => error,
            Err(error) => {
                // The store answered: it is up, whatever it thinks of these events.
                shared.succeeded();
                return Err(Failure::Rejected(error));
            }
        };
        shared.failed(&error);
        retries += 1;
        if let Some(max) = shared.retry.max_attempts
            && retries >= max
        {
            return Err(Failure::GaveUp(SinkError::Permanent(format!(
                "gave up after {retries} attempts: {}",
                error.message()
            ))));
        }
        let refused = matches!(error, SinkError::Refused(_));
        let giving_up = *give_up.borrow();
        // Only refusals once nobody waits for a fix count towards stopping.
        refused_in_a_row = match (refused, giving_up) {
            (true, true) => refused_in_a_row + 1,
            (true, false) => refused_in_a_row,
            (false, _) => 0,
        };
        if refused_in_a_row >= REFUSED_ATTEMPTS_WHEN_ENDED {
            return Err(Failure::Refused(error));
        }
        shared.stats.0.retries.fetch_add(1, Ordering::Relaxed);
        let delay = match (&error, error.retry_after()) {
            (_, Some(after)) => after.clamp(shared.retry.initial.get(), MAX_RETRY_AFTER),
            (SinkError::Unreachable(_), None) => {
                shared.retry.reconnect(retries).mul_f64(rng.factor())
            }
            // The last few tries before stopping: no point in waiting long for them.
            (SinkError::Refused(_), None) if giving_up => shared
                .retry
                .reconnect(refused_in_a_row)
                .mul_f64(rng.factor()),
            _ => shared.retry.backoff(retries).mul_f64(rng.factor()),
        };
        if refused && !giving_up {
            // Waiting for a fix; stop waiting as soon as nobody waits for one.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = give_up.wait_for(|give_up| *give_up) => {}
            }
        } else {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A small xorshift generator for jitter, seeded per request from the clock and a counter.
pub(super) struct Jitter(pub(super) u64);

impl Jitter {
    pub(super) fn new() -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let seed = u64::from(nanos)
            ^ SEQUENCE
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Jitter(seed | 1)
    }

    /// A factor in `[0.5, 1.0)`.
    pub(super) fn factor(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0
    }
}
