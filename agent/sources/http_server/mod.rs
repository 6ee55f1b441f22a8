//! The `http_server` source: events POSTed by browsers and services.
//!
//! ```toml
//! [sources.beacons]
//! type = "http_server"
//! topic = "events.raw"
//! address = "0.0.0.0:8080"
//! path = "/"                        # POST or PUT events here
//! health_path = "/health"           # GET: 200 {"status":"ok"}, no token needed
//! decoding = "auto"                 # by Content-Type; or "ndjson", "json", "text"
//! partial = "reject"                # or "accept_valid": keep the good lines of a bad body
//! tokens = ["${INGEST_TOKEN}"]      # optional bearer tokens, any of them accepted
//! copy_headers = ["user-agent"]     # copied into events as `user_agent`
//! remote_addr_field = "remote_addr" # client IP; "" leaves a field out
//! path_field = "path"
//! received_at_field = "received_at"
//! max_body_bytes = "10MiB"          # on the wire; 413 past it
//! max_decompressed_bytes = "64MiB"  # after gunzip; 413 past it (gzip bombs)
//! max_in_flight_bytes = "256MiB"    # all bodies held at once; 503 past it
//! max_header_bytes = "16KiB"        # 431 past it
//! max_connections = 1024            # more wait in the listen backlog
//! request_timeout = "30s"           # to send a body; 408 past it
//! header_timeout = "10s"            # to send headers once a request began (slowloris)
//! idle_timeout = "60s"              # a kept-alive connection without a request
//! max_wait = "1s"                   # for room in a full topic; then 503
//! retry_after = "1s"                # Retry-After of every 503
//! tls = { cert_file = "cert.pem", key_file = "key.pem" }   # needs the `tls` feature
//! ```
//!
//! # Bodies
//!
//! With `decoding = "auto"` the Content-Type decides: `application/x-ndjson` (and its aliases)
//! is one JSON object per line; `application/json` (and `+json` types) is an array of objects, one
//! object (also pretty-printed), or objects one per line; `text/plain` makes every non-blank line
//! a raw event, as a file source would. Without a Content-Type the first byte decides (`{` or `[`:
//! JSON, else text); any other type gets 415. `Content-Encoding: gzip` is decompressed, never
//! past `max_decompressed_bytes`. JSON events are full events (their fields), text events raw
//! lines; every event also gets the client's IP, the path, the receive time and the `headers`
//! chosen, replacing fields of those names the client sent.
//!
//! # Answers
//!
//! | status | when |
//! |---|---|
//! | 200 `{"accepted": n}` | the topic took all `n` events |
//! | 400 `{"error", "line"/"item", "accepted"}` | a bad line (named), bad gzip; with `accept_valid` the good lines were kept and counted in `accepted` |
//! | 401 | no or wrong bearer token (the answer does not say which) |
//! | 404, 405 | another path; another method (with `Allow`) |
//! | 408 | the body did not arrive within `request_timeout` |
//! | 413 | body too large, on the wire or decompressed |
//! | 415 | unknown Content-Type or Content-Encoding |
//! | 431 | headers past `max_header_bytes` (from hyper) |
//! | 503 + `Retry-After` | the topic stayed full (or the body budget spent) for `max_wait`, or shutdown |
//!
//! # Back-pressure
//!
//! A request is answered only after its events are in the topic, as one batch (all or nothing),
//! so a 200 is a promise and a 503 means nothing was kept: clients that retry on 503 lose
//! nothing and duplicate nothing. `handler.rs` explains the body budget and `server.rs` the
//! connection timeouts. Lines that fail to decode are counted (`invalid_events`) and answered
//! with 400; the client still holds them, so they do not go to a dead-letter topic.
//!
//! # Counters
//!
//! `requests`, `rejected_requests` and one `rejected_requests_<reason>` per reason
//! (`unauthorized`, `bad_request`, `too_large`, `unsupported_media_type`, `method_not_allowed`,
//! `not_found`, `timeout`, `topic_full`, `busy`, `shutting_down`), `invalid_events`,
//! `dropped_events` (a `drop_newest` topic), `connections`, `connection_limit_reached`,
//! `connections_idle_closed`, `connections_slow_closed`, `connections_stuck_closed`,
//! `connection_errors`; and `events_out`, `bytes_out` (decompressed body bytes), `errors`.

mod browser;
mod client_ip;
mod config;
mod cors;
mod handler;
mod pixel;
mod server;
#[cfg(test)]
mod tests;

pub use config::{Decoding, HttpServerConfig, Partial, Settings, TlsConfig};
pub use cors::CorsConfig;
pub use server::HttpServer;
