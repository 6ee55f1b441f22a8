//! The `http_poll` source: events fetched from an HTTP API on an interval.
//!
//! ```toml
//! [sources.orders]
//! type = "http_poll"
//! topic = "orders.raw"
//! url = "http://api.internal/v1/orders?status=paid"
//! method = "get"                        # or "post", with `body`
//! headers = { "Accept" = "application/json" }
//! auth = { strategy = "bearer", token = "${ORDERS_TOKEN}" }   # or basic: user, password
//! interval = "60s"                      # from the start of one poll to the next
//! jitter = "5s"                         # up to this much more, at random
//! request_timeout = "10s"               # per request
//! decoding = "auto"                     # NDJSON by Content-Type, else JSON; or "json", "ndjson"
//! items_path = "data.items"             # the array of items inside a JSON object
//! cursor = "id"                         # a field of the items...
//! cursor_param = "since"                # ...whose largest value is sent as ?since=...
//! # per poll: connection errors, timeouts, 408, 429, 5xx; the wait doubles per retry up to `max`
//! retry = { initial = "1s", max = "30s", max_attempts = 4 }
//! max_body_bytes = "64MiB"
//! ```
//!
//! # A poll
//!
//! Each poll sends the request with `If-None-Match` / `If-Modified-Since` from the last answer,
//! so an unchanged resource costs a 304 and produces nothing. A JSON answer that is an array
//! gives one event per object in it; an object gives one event, or with `items_path` the objects
//! of the array at that path; NDJSON gives one event per line. Items that are not objects (and
//! NDJSON lines that do not decode) are counted in `invalid_events` and skipped. Events are the
//! items' fields, published in batches of [`BATCH_EVENTS`](super::BATCH_EVENTS), waiting while
//! the topic is full (the next poll waits too).
//!
//! # Cursor and state
//!
//! With `cursor`, the largest value of that field among the items (numbers compared as numbers,
//! strings as text) is sent as `cursor_param` on every later request, so an API that supports it
//! returns only newer items. The cursor, `ETag` and `Last-Modified` are persisted in
//! `<data_dir>/sources/<name>/cursor.json` only once every event of the answers before them is
//! safe (the topic's safe offset has passed them): after a crash the source asks again for what
//! was not safe — at-least-once, never a gap. Until then the next requests already use the new
//! cursor.
//!
//! # Failures
//!
//! Nothing stops the source but shutdown. A failed request is retried with exponential backoff
//! (a `Retry-After` is honoured, capped by `retry.max`); after `retry.max_attempts` requests the
//! poll is given up until the next interval. Other answers (4xx) and undecodable bodies are not retried.
//! Every failure is counted (`poll_errors`, `retries`, `errors`) and logged at most once per 10
//! seconds with the number left out.
//!
//! Counters: `polls`, `poll_errors`, `retries`, `not_modified`, `invalid_events`,
//! `dropped_events` (a `drop_newest` topic), `state_errors`; `events_out`, `bytes_out` (answer
//! bytes), `errors`.

mod config;
mod poller;
mod state;
#[cfg(test)]
mod tests;

pub use config::{HttpPollConfig, PollDecoding, PollMethod, Settings};
pub use poller::HttpPoll;
pub use state::{Cursor, PollState, STATE_FILE};
