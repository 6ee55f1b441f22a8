//! Gathering deliveries into requests (`batch`), and the sink handles requests run on.

use super::*;

/// Gathers parts into requests.
pub(super) struct Batcher {
    pub(super) max_events: usize,
    pub(super) max_bytes: usize,
    pub(super) timeout: Duration,
    pub(super) parts: Vec<Part>,
    pub(super) events: usize,
    pub(super) bytes: usize,
    /// When the request being gathered must be sent; set by its first event.
    pub(super) deadline: Option<Instant>,
}

impl Batcher {
    pub(super) fn new(config: &BatchConfig) -> Self {
        Batcher {
            max_events: config.max_events.max(1),
            max_bytes: usize::try_from(config.max_bytes.bytes())
                .unwrap_or(usize::MAX)
                .max(1),
            timeout: config.timeout.get(),
            parts: Vec::new(),
            events: 0,
            bytes: 0,
            deadline: None,
        }
    }

    /// Adds the events of input `id`, moving every full request to `ready`. Returns how many
    /// parts the input was cut into.
    pub(super) fn push(
        &mut self,
        id: u64,
        batch: &Arc<Batch>,
        ready: &mut VecDeque<Request>,
    ) -> usize {
        let events = batch.events();
        let mut start = 0;
        let mut parts = 0;
        while start < events.len() {
            let room = self.max_events - self.events;
            let (end, bytes) = if start == 0
                && events.len() <= room
                && self.bytes + batch.byte_size() <= self.max_bytes
            {
                (events.len(), batch.byte_size())
            } else {
                let mut end = start;
                let mut bytes = 0;
                for event in &events[start..] {
                    if end - start == room {
                        break;
                    }
                    let size = event.estimated_size();
                    // An event that does not fit waits for the next request, unless it would be
                    // alone there too.
                    if self.bytes + bytes + size > self.max_bytes && self.events + end > start {
                        break;
                    }
                    if self.bytes + bytes + size > self.max_bytes {
                        end += 1;
                        bytes += size;
                        break;
                    }
                    end += 1;
                    bytes += size;
                }
                (end, bytes)
            };
            if end > start {
                if self.deadline.is_none() {
                    self.deadline = Some(Instant::now() + self.timeout);
                }
                self.parts.push(Part {
                    input: id,
                    batch: Arc::clone(batch),
                    range: start..end,
                });
                parts += 1;
                self.events += end - start;
                self.bytes += bytes;
                start = end;
            }
            if self.events >= self.max_events
                || self.bytes >= self.max_bytes
                || start < events.len()
            {
                self.flush(ready);
            }
        }
        parts
    }

    /// Moves the request being gathered, if any, to `ready`.
    pub(super) fn flush(&mut self, ready: &mut VecDeque<Request>) {
        self.deadline = None;
        self.events = 0;
        self.bytes = 0;
        if !self.parts.is_empty() {
            ready.push_back(Request {
                parts: std::mem::take(&mut self.parts),
                bisected: false,
            });
        }
    }
}

/// The sink handles: idle ones, and the sink that forks new ones.
pub(super) struct Handles {
    pub(super) idle: Vec<Box<dyn Sink>>,
    /// The original sink when it can fork; never written to.
    pub(super) template: Option<Box<dyn Sink>>,
}

impl Handles {
    pub(super) fn new(sink: Box<dyn Sink>) -> Self {
        match sink.fork() {
            Some(first) => Handles {
                idle: vec![first],
                template: Some(sink),
            },
            None => Handles {
                idle: vec![sink],
                template: None,
            },
        }
    }

    pub(super) fn take(&mut self) -> Option<Box<dyn Sink>> {
        self.idle
            .pop()
            .or_else(|| self.template.as_ref().and_then(|sink| sink.fork()))
    }

    pub(super) fn can_take(&self) -> bool {
        !self.idle.is_empty() || self.template.is_some()
    }

    pub(super) fn put(&mut self, handle: Box<dyn Sink>) {
        self.idle.push(handle);
    }

    pub(super) async fn close(self, name: &str) {
        for mut handle in self.idle.into_iter().chain(self.template) {
            if let Err(error) = handle.close().await {
                tracing::error!(sink = %name, %error, "Closing the sink failed.");
            }
        }
    }
}
