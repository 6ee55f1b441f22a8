//! The request handlers browsers need beyond the ingest path: the CORS checks and preflights
//! (rules in `cors.rs`) and the tracking pixel (`pixel.rs`), with the ingest path's limits,
//! token and back-pressure rules from `handler.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sluice_pipelines::{Batch, EventMeta, Str, Value};

use super::cors::OriginCheck;
use super::handler::{Reason, Rejection, Shared, client_address, publish, stamp};

/// What the `cors` settings make of a request: `Err` with the refusal when its origin is not
/// allowed, else the `Access-Control-Allow-Origin` its answer carries, if any.
pub(super) fn check_origin(
    shared: &Shared,
    headers: &HeaderMap,
    pixel: bool,
) -> Result<Option<HeaderValue>, Rejection> {
    let Some(cors) = &shared.settings.cors else {
        return Ok(None);
    };
    let check = if pixel {
        cors.check_pixel(headers)
    } else {
        cors.check(headers)
    };
    match check {
        OriginCheck::Absent => Ok(None),
        OriginCheck::Allowed(value) => Ok(Some(value)),
        OriginCheck::Refused(origin) => Err(Rejection::new(
            Reason::ForbiddenOrigin,
            format!("origin `{origin}` is not allowed to send events here"),
        )),
    }
}

/// Adds the CORS headers of an allowed origin to an answer.
pub(super) fn allow_origin(shared: &Shared, response: &mut Response, allowed: Option<HeaderValue>) {
    if let (Some(cors), Some(allowed)) = (&shared.settings.cors, allowed) {
        cors.decorate(response.headers_mut(), allowed);
    }
}

/// `OPTIONS` on the ingest or pixel path: the CORS preflight (see `cors.rs`).
pub(super) async fn preflight(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let pixel = shared.settings.pixel_path.as_deref() == Some(parts.uri.path());
    let methods = if pixel { "GET, HEAD" } else { "POST, PUT" };
    let Some(cors) = &shared.settings.cors else {
        let message = format!(
            "method OPTIONS is not allowed on {} (no `cors` configured); use {methods}",
            parts.uri.path()
        );
        let mut response = shared.refuse(Rejection::new(Reason::MethodNotAllowed, message));
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(methods));
        return response;
    };
    match cors.check(&parts.headers) {
        OriginCheck::Refused(origin) => shared.refuse(Rejection::new(
            Reason::ForbiddenOrigin,
            format!("origin `{origin}` is not allowed to send events here"),
        )),
        check => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(methods));
            if let OriginCheck::Allowed(allowed) = check {
                cors.decorate_preflight(response.headers_mut(), allowed, methods);
            }
            response
        }
    }
}

/// `GET`/`HEAD` on the pixel path: one event of the query parameters, answered with a GIF (see
/// `pixel.rs`).
pub(super) async fn pixel(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let allowed = match check_origin(&shared, &parts.headers, true) {
        Ok(allowed) => allowed,
        Err(rejection) => return shared.refuse(rejection),
    };
    let mut response = match receive_pixel(&shared, &parts).await {
        Ok(()) => {
            let mut response = Response::new(Body::from(super::pixel::gif()));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(rejection) => shared.refuse(rejection),
    };
    allow_origin(&shared, &mut response, allowed);
    response
}

/// Checks, builds and publishes a pixel request's event.
async fn receive_pixel(
    shared: &Shared,
    parts: &axum::http::request::Parts,
) -> Result<(), Rejection> {
    if !shared.authorized(&parts.headers) {
        return Err(Rejection::new(Reason::Unauthorized, "unauthorized"));
    }
    let query = parts.uri.query().unwrap_or_default();
    let meta = EventMeta {
        source: shared.source,
        origin: None,
    };
    let path_value = Value::String(Str::from(parts.uri.path()));
    let stamp = stamp(
        &shared.settings,
        &parts.headers,
        client_address(shared, parts),
        &path_value,
        chrono::Utc::now(),
    );
    let mut event = super::pixel::pixel_event(query, meta);
    for (name, value) in stamp {
        event.fields_mut().insert(name, value);
    }
    publish(shared, Batch::new(vec![event]), query.len() as u64)
        .await
        .map_err(|(rejection, _)| rejection)
}
