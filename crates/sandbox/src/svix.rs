//! The Svix API stand-in (`https://api.<region>.svix.com`): the two operations of
//! `reference/svix-openapi/svix-endpoints-subset.json`.
//!
//! Auth: `Bearer <token>` where the token came from the instance's `POST /v1/webhooks/svix_url`; a token
//! opens only its own app (another app: 403), anything else is 401. Paths are matched after the faults of
//! the token's instance (target `svix`) are applied.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::respond::{self, Answer};
use super::scenario::{EndpointSpec, SvixAppSpec};
use super::state::{HostKind, Rejection, RequestHead, Shared};

/// Svix's default page size for list operations.
const DEFAULT_LIMIT: usize = 50;
/// Svix's maximum page size.
const MAX_LIMIT: usize = 250;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, head: RequestHead) -> Response {
    let seq = shared.next_seq();
    let RequestHead { method, uri, headers, .. } = &head;
    let (credential, token) = shared.classify_credential(headers);
    let instance = token.and_then(|t| shared.instance_by_svix_token(t));

    let (answer, plan) = match instance {
        None => (
            respond::svix_error(StatusCode::UNAUTHORIZED, "authentication_failed", "Invalid token"),
            Default::default(),
        ),
        Some(index) => {
            let plan = shared.plan_faults(index, HostKind::SvixApi, uri.path());
            let answer = match plan.rejection {
                Some(Rejection::Revoked) => {
                    respond::svix_error(StatusCode::UNAUTHORIZED, "authentication_failed", "Invalid token")
                }
                Some(Rejection::RateLimited { retry_after_secs }) => {
                    respond::svix_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit", "Too many requests")
                        .with_header(axum::http::header::RETRY_AFTER, retry_after_secs)
                }
                Some(Rejection::ServerError) => {
                    respond::svix_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error")
                }
                Some(Rejection::MalformedBody) => respond::malformed_echo(headers),
                None => route(&shared, index, method, uri),
            };
            (answer, plan)
        }
    };

    if let Some(index) = instance {
        shared.gate.pass(index, || format!("{method} {}", uri.path())).await;
    }
    shared.record(seq, HostKind::SvixApi, &head, instance, answer.status.as_u16(), credential);
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    answer.into_response(plan.slow_body)
}

fn not_found() -> Answer {
    respond::svix_error(StatusCode::NOT_FOUND, "not_found", "Entity not found")
}

fn route(shared: &Shared, index: usize, method: &Method, uri: &Uri) -> Answer {
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (app_id, rest) = match segments.as_slice() {
        ["api", "v1", "app", app_id, rest @ ..] if !rest.is_empty() => (*app_id, rest),
        _ => return not_found(),
    };
    if method != Method::GET {
        return not_found();
    }
    let Some(app) = &shared.instances[index].spec.svix else { return not_found() };
    if app.app_id != app_id {
        // The token is valid, but for another app. Does that other app exist? Svix answers 403 either way.
        return respond::svix_error(StatusCode::FORBIDDEN, "forbidden", "Insufficient access for the given operation");
    }
    match rest {
        ["endpoint"] => list_endpoints(app, uri.query()),
        ["endpoint", endpoint_id, "secret"] => match app.endpoints.iter().find(|e| e.id == *endpoint_id) {
            Some(endpoint) => Answer::json(StatusCode::OK, json!({ "key": endpoint.secret })),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn is_endpoint_id(text: &str) -> bool {
    text.len() == 30 && text.starts_with("ep_") && text[3..].chars().all(|c| c.is_ascii_alphanumeric())
}

/// `GET /api/v1/app/{app_id}/endpoint`: `ListResponse_EndpointOut_`, paginated like Svix: `iterator` is the
/// id of the page's last item, `prevIterator` is `-` + the id of its first item, `done` says no more items
/// follow. `order` is `ascending` (default here) or `descending`. An `iterator` starting with `-` pages back.
fn list_endpoints(app: &SvixAppSpec, query: Option<&str>) -> Answer {
    let mut limit = DEFAULT_LIMIT;
    let mut iterator: Option<String> = None;
    let mut descending = false;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => return respond::svix_validation_error(&["query", "limit"], "limit must be between 1 and 250"),
            },
            "iterator" => {
                let id = value.strip_prefix('-').unwrap_or(&value);
                if !is_endpoint_id(id) {
                    return respond::svix_validation_error(
                        &["query", "iterator"],
                        "iterator is not a valid endpoint id",
                    );
                }
                iterator = Some(value.into_owned());
            }
            "order" => match value.as_ref() {
                "ascending" => descending = false,
                "descending" => descending = true,
                _ => {
                    return respond::svix_validation_error(
                        &["query", "order"],
                        "order must be ascending or descending",
                    );
                }
            },
            _ => {}
        }
    }

    let mut ordered: Vec<&EndpointSpec> = app.endpoints.iter().collect();
    if descending {
        ordered.reverse();
    }
    // Position of the first item after the iterator (or, going back, the first of the previous page).
    let after =
        |id: &str| ordered.iter().position(|e| if descending { e.id.as_str() < id } else { e.id.as_str() > id });
    let (start, end) = match iterator.as_deref() {
        None => (0, limit.min(ordered.len())),
        Some(back) if back.starts_with('-') => {
            let id = &back[1..];
            let first_of_current = ordered
                .iter()
                .position(|e| if descending { e.id.as_str() <= id } else { e.id.as_str() >= id })
                .unwrap_or(ordered.len());
            (first_of_current.saturating_sub(limit), first_of_current)
        }
        Some(id) => {
            let start = after(id).unwrap_or(ordered.len());
            (start, (start + limit).min(ordered.len()))
        }
    };
    let page = &ordered[start..end];
    let done = end >= ordered.len();
    let data: Vec<Value> = page.iter().map(|e| endpoint_out(e)).collect();
    Answer::json(
        StatusCode::OK,
        json!({
            "data": data,
            "iterator": page.last().map(|e| e.id.clone()),
            "prevIterator": page.first().map(|e| format!("-{}", e.id)),
            "done": done,
        }),
    )
}

fn endpoint_out(endpoint: &EndpointSpec) -> Value {
    let mut out = json!({
        "id": endpoint.id,
        "metadata": {},
        "url": endpoint.url,
        "description": endpoint.description,
        "throttleRate": null,
        "uid": null,
        "disabled": endpoint.disabled,
        "channels": null,
        "createdAt": endpoint.created_at,
        "updatedAt": endpoint.created_at,
    });
    // The live API (and Svix's own SDK models) name the event filter `filterTypes`; the trimmed reference
    // schema calls it `eventTypes`. Serve the live name, and omit it for an endpoint that receives every
    // event type, as Svix does.
    if let Some(types) = &endpoint.event_types {
        out["filterTypes"] = json!(types);
    }
    out
}
