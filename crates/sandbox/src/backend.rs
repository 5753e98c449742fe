//! The Backend API stand-in (`https://api.clerk.com`), plus the sandbox's admin surface under `/__sandbox/`.
//!
//! Served: `GET /v1/instance`, `GET /v1/users/count`, `GET /v1/domains`, `POST /v1/webhooks/svix_url`.
//! Everything else answers 404 with a Clerk error body (after authentication, as Clerk does) and is recorded,
//! so tests can prove the worker never called it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::respond::{self, Answer};
use super::state::{Fault, FaultTarget, HostKind, PresentedCredential, Rejection, RequestHead, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__sandbox/instances", get(admin_instances))
        .route("/__sandbox/requests", get(admin_requests).delete(admin_clear_requests))
        .route("/__sandbox/dns-queries", get(admin_dns_queries))
        .route("/__sandbox/faults", axum::routing::post(admin_set_fault).delete(admin_clear_faults))
        .fallback(handle)
        .with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, head: RequestHead) -> Response {
    let seq = shared.next_seq();
    let RequestHead { method, uri, headers, .. } = &head;
    let (credential, token) = shared.classify_credential(headers);
    let instance = token.and_then(|t| shared.instance_by_secret_key(t));

    let (answer, plan) = match (credential, instance) {
        (PresentedCredential::None, _) => (
            respond::clerk_answer(
                StatusCode::UNAUTHORIZED,
                "authentication_invalid",
                "Invalid authentication",
                "The Authorization header is missing. Provide your secret key as a Bearer token.",
            ),
            Default::default(),
        ),
        (PresentedCredential::Malformed, _) => (
            respond::clerk_answer(
                StatusCode::UNAUTHORIZED,
                "authorization_header_format_invalid",
                "Invalid Authorization header format",
                "The Authorization header must be of the form `Bearer <secret key>`.",
            ),
            Default::default(),
        ),
        (_, None) => (respond::clerk_unauthenticated(), Default::default()),
        (_, Some(index)) => {
            let plan = shared.plan_faults(index, HostKind::BackendApi, uri.path());
            let answer = match plan.rejection {
                Some(Rejection::Revoked) => respond::clerk_unauthenticated(),
                Some(Rejection::RateLimited { retry_after_secs }) => respond::clerk_rate_limited(retry_after_secs),
                Some(Rejection::ServerError) => respond::clerk_server_error(),
                Some(Rejection::MalformedBody) => respond::malformed_echo(headers),
                None => route(&shared, index, method, uri),
            };
            (answer, plan)
        }
    };

    if let Some(index) = instance {
        shared.gate.pass(index, || format!("{method} {}", uri.path())).await;
    }
    shared.record(seq, HostKind::BackendApi, &head, instance, answer.status.as_u16(), credential);
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    answer.into_response(plan.slow_body)
}

fn route(shared: &Shared, index: usize, method: &Method, uri: &Uri) -> Answer {
    let spec = &shared.instances[index].spec;
    match (method.as_str(), uri.path()) {
        ("GET", "/v1/instance") => Answer::json(
            StatusCode::OK,
            json!({
                "object": "instance",
                "id": spec.instance_id,
                "environment_type": spec.environment.as_str(),
                "allowed_origins": spec.allowed_origins,
                "workspace_id": spec.workspace_id,
            }),
        ),
        ("GET", "/v1/users/count") => users_count(shared, index, uri.query()),
        ("GET", "/v1/domains") => domains(shared, index),
        ("POST", "/v1/webhooks/svix_url") => svix_url(shared, index),
        _ => respond::clerk_not_found(),
    }
}

/// `GET /v1/users/count`: the total, or with `last_active_at_since` / `last_active_at_after` (a Unix time in
/// milliseconds) the scenario's active users. Other filters are accepted and ignored.
fn users_count(shared: &Shared, index: usize, query: Option<&str>) -> Answer {
    let spec = &shared.instances[index].spec;
    let mut count = spec.users_total;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "last_active_at_since" || name == "last_active_at_after" {
            if value.parse::<i64>().is_err() {
                return respond::clerk_answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "form_param_format_invalid",
                    "is invalid",
                    &format!("{name} must be a Unix timestamp in milliseconds"),
                )
                .with_meta_param(&name);
            }
            count = spec.users_active;
        }
    }
    Answer::json(StatusCode::OK, json!({ "object": "total_count", "total_count": count }))
}

trait WithMeta {
    fn with_meta_param(self, name: &str) -> Self;
}

impl WithMeta for Answer {
    fn with_meta_param(mut self, name: &str) -> Self {
        if let Some(error) = self.body["errors"].get_mut(0) {
            error["meta"] = json!({ "param_name": name });
        }
        self
    }
}

fn domains(shared: &Shared, index: usize) -> Answer {
    let instance = &shared.instances[index];
    let own_fapi = super::origin(&instance.public.frontend_api_url);
    let data: Vec<Value> = instance
        .spec
        .domains
        .iter()
        .map(|domain| {
            json!({
                "object": "domain",
                "id": domain.id,
                "name": domain.name,
                "is_satellite": domain.is_satellite,
                "frontend_api_url": domain.frontend_api_url.clone().unwrap_or_else(|| own_fapi.clone()),
                "accounts_portal_url": domain.accounts_portal_url,
                "proxy_url": null,
                "development_origin": domain.development_origin,
                "cname_targets": domain.cname_targets.as_ref().map(|targets| {
                    targets
                        .iter()
                        .map(|t| json!({ "host": t.host, "value": t.value, "required": t.required }))
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    let total = data.len();
    Answer::json(StatusCode::OK, json!({ "data": data, "total_count": total }))
}

/// `POST /v1/webhooks/svix_url`.
///
/// Shape chosen for the answer, after the Svix server's `app_portal_access` (svix-webhooks,
/// `server/svix-server/src/v1/endpoints/auth.rs`) and public reports of Clerk's answer
/// (`{"svix_url":"https://app.svix.com/login?...#key=..."}`):
///
/// ```text
/// https://app.svix.com/login?primaryColorLight=%236c47ff&darkMode=false#key=<KEY>
/// KEY = percent-encoded standard base64 (with `=` padding) of
///       {"appId":"app_...","token":"appsk_...","region":"us"|"eu"}
/// ```
///
/// The token is fresh for every call (a short-lived app-portal token); it opens only that app on the Svix
/// stand-in. The percent-encoding of `=`, `+`, `/` follows Svix's hosted API (`...%3D%3D`); a client should
/// percent-decode the fragment value before base64-decoding it. Without a Svix app: 400 `svix_app_missing`.
fn svix_url(shared: &Shared, index: usize) -> Answer {
    let Some(app) = &shared.instances[index].spec.svix else {
        return respond::clerk_answer(
            StatusCode::BAD_REQUEST,
            "svix_app_missing",
            "No Svix apps are associated with the current instance.",
            "No Svix apps are associated with the current instance.",
        );
    };
    let token = shared.issue_svix_token(index);
    let key = json!({ "appId": app.app_id, "token": token, "region": app.region }).to_string();
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let key: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let url = format!("https://app.svix.com/login?primaryColorLight=%236c47ff&darkMode=false#key={key}");
    Answer::json(StatusCode::OK, json!({ "svix_url": url }))
}

async fn admin_instances(State(shared): State<Arc<Shared>>) -> Json<super::SandboxInfo> {
    Json(super::SandboxInfo::of(&shared))
}

async fn admin_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<super::RecordedRequest>> {
    Json(shared.requests())
}

async fn admin_clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_requests();
    StatusCode::NO_CONTENT
}

async fn admin_dns_queries(State(shared): State<Arc<Shared>>) -> Json<Vec<super::RecordedDnsQuery>> {
    Json(shared.dns_queries())
}

/// Body of `POST /__sandbox/faults`.
#[derive(Debug, Deserialize)]
struct FaultRequest {
    instance: String,
    fault: Fault,
    #[serde(default)]
    target: FaultTarget,
    /// Only this request path (e.g. `/v1/instance`); absent: every path of the target.
    #[serde(default)]
    path: Option<String>,
}

async fn admin_set_fault(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error.to_string() }))).into_response();
        }
    };
    match shared.instance_by_name(&request.instance) {
        Some(index) => {
            shared.add_fault(index, request.target, request.path, request.fault);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no instance `{}`", request.instance) })))
            .into_response(),
    }
}

async fn admin_clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}
