//! Building answers: JSON bodies (optionally delivered slowly) and the error bodies of Clerk and Svix.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// A decided answer, before injected latency and slow-body delivery.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    pub(crate) fn json(status: StatusCode, body: Value) -> Self {
        Self { status, body, headers: Vec::new() }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((name, value));
        }
        self
    }

    /// The HTTP response; with `slow_body`, the status and headers go out at once, then half the body,
    /// then the rest after the delay.
    pub(crate) fn into_response(self, slow_body: Option<Duration>) -> Response {
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut builder = Response::builder().status(self.status).header(header::CONTENT_TYPE, "application/json");
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let body = match slow_body {
            None => Body::from(bytes),
            Some(delay) => {
                let mut first = Bytes::from(bytes);
                let rest = first.split_off(first.len() / 2);
                let head = futures::stream::once(async move { Ok::<_, Infallible>(first) });
                let tail = futures::stream::once(async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(rest)
                });
                Body::from_stream(head.chain(tail))
            }
        };
        builder.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

fn trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A `ClerkErrors` body with one error.
pub(crate) fn clerk_error(code: &str, message: &str, long_message: &str) -> Value {
    json!({
        "errors": [{ "message": message, "long_message": long_message, "code": code }],
        "clerk_trace_id": trace_id(),
    })
}

/// A `ClerkErrors` answer with Clerk's `X-Clerk-Trace-Id` header.
pub(crate) fn clerk_answer(status: StatusCode, code: &str, message: &str, long_message: &str) -> Answer {
    let body = clerk_error(code, message, long_message);
    let trace = body["clerk_trace_id"].as_str().unwrap_or_default().to_owned();
    Answer::json(status, body).with_header(HeaderName::from_static("x-clerk-trace-id"), trace)
}

pub(crate) fn clerk_unauthenticated() -> Answer {
    clerk_answer(
        StatusCode::UNAUTHORIZED,
        "authentication_invalid",
        "Invalid authentication",
        "Unable to authenticate the request, you need to supply an active API key",
    )
}

pub(crate) fn clerk_not_found() -> Answer {
    clerk_answer(StatusCode::NOT_FOUND, "resource_not_found", "not found", "The requested resource was not found")
}

pub(crate) fn clerk_rate_limited(retry_after_secs: u64) -> Answer {
    clerk_answer(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests",
        "Too many requests, please try again later.",
    )
    .with_header(header::RETRY_AFTER, retry_after_secs)
}

pub(crate) fn clerk_server_error() -> Answer {
    clerk_answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_clerk_error",
        "Oops, an unexpected error occurred",
        "There was an internal error on our servers. We've been notified and are working on fixing it.",
    )
}

/// 200 with a body of no API's shape that quotes the request's `Authorization` header (value and map key).
pub(crate) fn malformed_echo(headers: &axum::http::HeaderMap) -> Answer {
    let echoed = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("no authorization header")
        .to_owned();
    let bare = echoed.strip_prefix("Bearer ").unwrap_or(&echoed).to_owned();
    Answer::json(
        StatusCode::OK,
        json!({ bare.clone(): { "id": 42, "data": echoed, "object": [bare] }, "data": bare, "done": "yes" }),
    )
}

/// An `HttpErrorOut` answer of the Svix API.
pub(crate) fn svix_error(status: StatusCode, code: &str, detail: &str) -> Answer {
    Answer::json(status, json!({ "code": code, "detail": detail }))
}

/// An `HTTPValidationError` answer of the Svix API (422).
pub(crate) fn svix_validation_error(location: &[&str], message: &str) -> Answer {
    Answer::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "detail": [{ "loc": location, "msg": message, "type": "value_error" }] }),
    )
}
