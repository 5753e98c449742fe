//! The webhook facts: allowlist calls `clerk.svix_url` (`POST /v1/webhooks/svix_url`),
//! `svix.list_endpoints` (the Svix app's endpoints) and `svix.endpoint_secret` (an endpoint's signing secret).
//!
//! - `clerk.svix_url` answers a short-lived Svix app-portal URL whose fragment holds the app id, an app-portal token
//!   and the region. The URL (it embeds the token) is parsed at once and never logged, stored or put in an
//!   error; the token is kept in a [`SecretString`] inside the scan's [`ScanCalls`], which presents it to
//!   the Svix host only. A 400 means the instance has no Svix app: the fact "no webhooks set up".
//! - `svix.list_endpoints` is paged (`limit`, `iterator`) up to [`MAX_PAGES`] pages.
//! - `svix.endpoint_secret` is called only for the enabled endpoints that deliver to a handler whose secret
//!   is written in the repo (a `literal_fingerprint`, or a `whsec_` value a committed env file assigns to
//!   the variable the handler reads: a fingerprint to compare with), at most [`MAX_SECRET_READS`] per scan.
//!   The secret is hashed at once (`sha256:<hex>` of the exact `whsec_` string, as the repo extractor
//!   hashes literals) and the plaintext zeroized.
//!
//! A 401/403 on `clerk.svix_url` (Backend API) means the secret key is rejected: the job fails permanently like for
//! the other Backend API calls. Every other failure of the three webhook calls makes the webhook fact [`Fact::Unavailable`], so the
//! checks that need it report `error`.

use std::fmt;
use std::future::Future;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use url::Url;
use zeroize::Zeroize;

use super::allowlist::CallMethod;
use super::http::{CallError, CallResponse, ScanCalls};
use crate::audit::artifact::{CommittedSecretKind, RepoArtifact, SecretSource};
use crate::audit::facts::{Fact, WebhookEndpoint, WebhookFacts, endpoint_path_and_shown_url, percent_decode};
use crate::error::{FailureReason, JobError};

/// Svix's host when the token names no region we know (what Svix's own client libraries do).
pub const DEFAULT_SVIX_API: &str = "https://api.svix.com";
/// Page size asked of `svix.list_endpoints` (Svix's maximum).
pub const PAGE_LIMIT: u32 = 250;
/// `svix.list_endpoints` pages read at most: [`PAGE_LIMIT`] x [`MAX_PAGES`] endpoints. More makes the fact unavailable.
pub const MAX_PAGES: usize = 20;
/// `svix.endpoint_secret` calls made at most per scan; endpoints beyond it keep no fingerprint (the checks then say `error`).
pub const MAX_SECRET_READS: usize = 20;

/// The Svix regional API host for a region, per Svix's client libraries and API reference servers.
pub fn regional_host(region: Option<&str>) -> Url {
    let host = match region.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("us") => "https://api.us.svix.com",
        Some("eu") => "https://api.eu.svix.com",
        Some("in") => "https://api.in.svix.com",
        Some("ca") => "https://api.ca.svix.com",
        Some("au") => "https://api.au.svix.com",
        _ => DEFAULT_SVIX_API,
    };
    Url::parse(host).expect("constant URL")
}

/// The Svix API base for a token's region: the `svix.api_url` override when configured, else the
/// regional host.
pub fn api_base(override_url: Option<&Url>, region: Option<&str>) -> Url {
    override_url.cloned().unwrap_or_else(|| regional_host(region))
}

/// What the app-portal URL grants: the app and a token for it. `Debug` never shows the token.
pub struct PortalAccess {
    pub app_id: String,
    pub token: SecretString,
    pub region: Option<String>,
}

impl fmt::Debug for PortalAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalAccess")
            .field("app_id", &self.app_id)
            .field("token", &"[REDACTED]")
            .field("region", &self.region)
            .finish()
    }
}

/// Why an app-portal URL could not be used. Never quotes the URL or any part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SvixUrlError {
    #[error("the svix_url has no key in its fragment")]
    NoKey,
    #[error("the svix_url key is not base64")]
    NotBase64,
    #[error("the svix_url key is not the expected JSON object")]
    NotJson,
    #[error("the svix_url key has no {0}")]
    MissingField(&'static str),
    #[error("the svix_url key has a malformed {0}")]
    BadField(&'static str),
}

#[derive(Deserialize)]
struct PortalKey {
    #[serde(rename = "appId")]
    app_id: Option<String>,
    token: Option<SecretString>,
    region: Option<String>,
}

/// Parses the app-portal URL `clerk.svix_url` answers: `https://app.svix.com/login?...#key=<KEY>` where KEY is the
/// percent-encoded base64 of `{"appId":"app_...","token":"...","region":"us"|"eu"|...}`. Intermediate
/// copies of the token are zeroized.
pub fn parse_svix_url(raw: &str) -> Result<PortalAccess, SvixUrlError> {
    let fragment = raw.split_once('#').map(|(_, fragment)| fragment).ok_or(SvixUrlError::NoKey)?;
    let encoded = fragment.split('&').find_map(|pair| pair.strip_prefix("key=")).ok_or(SvixUrlError::NoKey)?;
    let mut text = percent_decode(encoded);
    // Be lenient about the base64 alphabet and padding; a space is a `+` a form decoder mangled.
    let mut cleaned: String = text.trim().chars().map(|c| if c == ' ' { '+' } else { c }).collect();
    text.zeroize();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let decoded = engines.iter().find_map(|engine| engine.decode(cleaned.as_bytes()).ok());
    cleaned.zeroize();
    let mut decoded = decoded.ok_or(SvixUrlError::NotBase64)?;
    let parsed = serde_json::from_slice::<PortalKey>(&decoded);
    decoded.zeroize();
    let key = parsed.map_err(|_| SvixUrlError::NotJson)?;

    let app_id = key.app_id.ok_or(SvixUrlError::MissingField("appId"))?;
    if app_id.is_empty()
        || app_id.len() > 256
        || !app_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(SvixUrlError::BadField("appId"));
    }
    let token = key.token.ok_or(SvixUrlError::MissingField("token"))?;
    let exposed = token.expose_secret();
    if exposed.is_empty() || exposed.len() > 4096 || !exposed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SvixUrlError::BadField("token"));
    }
    let region = key.region.filter(|region| !region.trim().is_empty());
    Ok(PortalAccess { app_id, token, region })
}

/// `sha256:<lowercase hex>` of the exact signing secret string; a secret Svix answers without its
/// `whsec_` prefix gets it first (the repo extractor fingerprints whole `whsec_` literals).
pub fn secret_fingerprint(secret: &str) -> String {
    let mut hasher = Sha256::new();
    let known_prefix = ["whsec_", "whsk_", "whsk1_", "whpk_", "whpk1_"].iter().any(|p| secret.starts_with(p));
    if !known_prefix {
        hasher.update(b"whsec_");
    }
    hasher.update(secret.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[derive(Deserialize)]
struct SvixUrlResponse {
    svix_url: SecretString,
}

/// `ListResponse_EndpointOut_`.
#[derive(Debug, Deserialize)]
pub struct EndpointPage {
    pub data: Vec<EndpointOut>,
    pub iterator: Option<String>,
    pub done: bool,
}

/// `EndpointOut`, the fields the checks need.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// The event filter under the live API's name (Svix's SDK models: `filterTypes`). Read first.
    #[serde(default)]
    pub filter_types: Option<Vec<String>>,
    /// The same filter under the trimmed reference schema's name, read when `filterTypes` is absent.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct EndpointSecretOut {
    key: SecretString,
}

/// Parses a JSON body, then zeroizes the body (it may hold a token or a secret).
fn take_json<T: serde::de::DeserializeOwned>(mut response: CallResponse) -> Result<T, CallError> {
    let parsed = response.json::<T>();
    response.body.zeroize();
    parsed
}

/// What `clerk.svix_url` said about the instance's Svix app.
#[derive(Debug)]
pub enum Portal {
    /// 400: the instance has no Svix app, so no webhook is set up.
    NoApp,
    /// The app and its token.
    Access(PortalAccess),
    /// The call failed or answered something unusable.
    Unavailable(String),
}

/// `clerk.svix_url`. Errs only when the Backend API rejects the secret key (401/403).
pub async fn portal(calls: &ScanCalls<'_>) -> Result<Portal, JobError> {
    const CALL: &str = "POST /v1/webhooks/svix_url";
    match calls.send(CallMethod::Post, calls.backend_url("/v1/webhooks/svix_url")).await {
        Ok(response) => match take_json::<SvixUrlResponse>(response) {
            Ok(answer) => match parse_svix_url(answer.svix_url.expose_secret()) {
                Ok(access) => Ok(Portal::Access(access)),
                Err(error) => {
                    warn!(error = %error, "Svix app-portal URL unusable");
                    Ok(Portal::Unavailable(format!("{CALL}: {error}")))
                }
            },
            // Not the decoder's message: it may quote a value of the body, which holds the token.
            Err(_) => Ok(Portal::Unavailable(format!("{CALL}: the answer is not the expected shape"))),
        },
        Err(CallError::Status { status: 400, .. }) => Ok(Portal::NoApp),
        Err(CallError::Status { status: 401 | 403, .. }) => Err(JobError::permanent(
            FailureReason::ClerkKeyRejected,
            format!("{CALL}: the Backend API rejected the secret key"),
        )),
        Err(error) => {
            warn!(error = %error, "Svix app-portal URL unavailable");
            Ok(Portal::Unavailable(format!("{CALL}: {error}")))
        }
    }
}

/// The routes of the repo's handlers whose signing secret the repo holds (a `literal_fingerprint` written in
/// the code, or a `whsec_` value a committed env file assigns to the variable the handler reads), so
/// there is a fingerprint to compare with; `None` for a handler whose route is unknown. Empty: no secret
/// is ever read.
pub fn secret_wants(artifact: Option<&RepoArtifact>) -> Vec<Option<String>> {
    let Some(artifact) = artifact else { return Vec::new() };
    artifact
        .webhook_handlers
        .iter()
        .filter(|handler| match &handler.secret_source {
            Some(SecretSource::LiteralFingerprint { .. }) => true,
            Some(SecretSource::EnvVar { env_var }) => artifact
                .committed_secrets
                .iter()
                .any(|c| c.kind == CommittedSecretKind::WebhookSecret && c.variable == *env_var),
            _ => false,
        })
        .map(|handler| handler.route.clone())
        .collect()
}

/// Reads every page through `fetch_page(iterator)`, at most [`MAX_PAGES`] pages.
pub async fn paginate<F, Fut>(mut fetch_page: F) -> Result<Vec<EndpointOut>, String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<EndpointPage, String>>,
{
    let mut endpoints = Vec::new();
    let mut iterator: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch_page(iterator.clone()).await?;
        let empty = page.data.is_empty();
        endpoints.extend(page.data);
        if page.done {
            return Ok(endpoints);
        }
        match page.iterator {
            Some(next) if !empty && iterator.as_deref() != Some(next.as_str()) && is_iterator(&next) => {
                iterator = Some(next);
            }
            _ => return Err("Svix endpoint list: the answer names no usable next page".into()),
        }
    }
    Err(format!("Svix endpoint list: more than {MAX_PAGES} pages ({} endpoints); not all were read", endpoints.len()))
}

fn is_iterator(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_endpoint_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `svix.list_endpoints`, one page.
async fn list_page(calls: &ScanCalls<'_>, app_id: &str, iterator: Option<String>) -> Result<EndpointPage, String> {
    let mut url = calls.svix_url(&format!("/api/v1/app/{app_id}/endpoint")).ok_or("no Svix host set")?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("limit", &PAGE_LIMIT.to_string());
        if let Some(iterator) = &iterator {
            query.append_pair("iterator", iterator);
        }
    }
    let response = calls.send(CallMethod::Get, url).await.map_err(|e| format!("Svix endpoint list: {e}"))?;
    take_json(response).map_err(|e| format!("Svix endpoint list: {e}"))
}

/// `svix.endpoint_secret` for one endpoint: the secret's fingerprint.
async fn read_secret_fingerprint(calls: &ScanCalls<'_>, app_id: &str, endpoint_id: &str) -> Result<String, String> {
    let url =
        calls.svix_url(&format!("/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret")).ok_or("no Svix host set")?;
    let response = calls.send(CallMethod::Get, url).await.map_err(|e| format!("Svix endpoint secret: {e}"))?;
    // Not the decoder's message: it may quote a value of the body, which holds the secret.
    let secret: EndpointSecretOut =
        take_json(response).map_err(|_| "Svix endpoint secret: the answer is not the expected shape".to_owned())?;
    Ok(secret_fingerprint(secret.key.expose_secret()))
    // `secret` drops here: SecretString zeroizes the plaintext.
}

fn to_endpoint(out: EndpointOut) -> WebhookEndpoint {
    let (path, url) = endpoint_path_and_shown_url(&out.url);
    WebhookEndpoint {
        path,
        event_types: out.filter_types.or(out.event_types),
        id: out.id,
        url,
        disabled: out.disabled.unwrap_or(false),
        secret_fingerprint: None,
    }
}

/// The two Svix calls for the app `clerk.svix_url` named (its token already set on `calls`).
pub async fn endpoints(calls: &ScanCalls<'_>, app_id: &str, wants: &[Option<String>]) -> Fact<WebhookFacts> {
    let listed = match paginate(|iterator| list_page(calls, app_id, iterator)).await {
        Ok(listed) => listed,
        Err(reason) => {
            warn!(reason = %reason, "Svix endpoints unavailable");
            return Fact::Unavailable(reason);
        }
    };
    if let Some(bad) = listed.iter().find(|e| !is_endpoint_id(&e.id)) {
        let shown: String = bad.id.chars().filter(char::is_ascii_alphanumeric).take(40).collect();
        return Fact::Unavailable(format!("Svix endpoint list: malformed endpoint id {shown:?}"));
    }
    let mut endpoints: Vec<WebhookEndpoint> = listed.into_iter().map(to_endpoint).collect();

    // `svix.endpoint_secret` only for endpoints delivering to a handler with a written secret.
    let wanted: Vec<usize> = endpoints
        .iter()
        .enumerate()
        .filter(|(_, endpoint)| wants.iter().any(|route| endpoint.delivers_to(route.as_deref())))
        .map(|(index, _)| index)
        .collect();
    if wanted.len() > MAX_SECRET_READS {
        warn!(
            candidates = wanted.len(),
            read = MAX_SECRET_READS,
            "too many endpoints to compare secrets with; reading the first ones"
        );
    }
    // The reads are independent: one round trip for all of them.
    let reads = wanted.into_iter().take(MAX_SECRET_READS).map(|index| {
        let id = &endpoints[index].id;
        async move { (index, read_secret_fingerprint(calls, app_id, id).await) }
    });
    for (index, read) in futures::future::join_all(reads).await {
        match read {
            Ok(fingerprint) => endpoints[index].secret_fingerprint = Some(fingerprint),
            Err(reason) => {
                warn!(reason = %reason, "Svix endpoint secret unavailable");
                return Fact::Unavailable(reason);
            }
        }
    }
    debug!(endpoints = endpoints.len(), "webhook endpoints fetched");
    Fact::Known(WebhookFacts { svix_app: true, endpoints })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const TOKEN: &str = "appsk_Abc123Def456Ghi789Jkl012Mno345";

    fn url_with_key(json: &str) -> String {
        let key = base64::engine::general_purpose::STANDARD.encode(json);
        let key: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        format!("https://app.svix.com/login?primaryColorLight=%236c47ff&darkMode=false#key={key}")
    }

    #[test]
    fn parses_a_good_svix_url() {
        let raw = url_with_key(&format!(r#"{{"appId":"app_2SbxAbc","token":"{TOKEN}","region":"eu"}}"#));
        let access = parse_svix_url(&raw).unwrap();
        assert_eq!(access.app_id, "app_2SbxAbc");
        assert_eq!(access.token.expose_secret(), TOKEN);
        assert_eq!(access.region.as_deref(), Some("eu"));
        let shown = format!("{access:?}");
        assert!(!shown.contains(TOKEN) && shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn percent_encoding_of_the_key_is_decoded() {
        // A payload whose base64 holds `+`, `/` and `=` (percent-encoded as %2B, %2F, %3D).
        let json = r#"{"appId":"app_x","token":"appsk_>>>???~~~","region":"us"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert!(b64.contains('+') || b64.contains('/') || b64.contains('='), "{b64}");
        let raw = url_with_key(json);
        assert!(raw.contains('%'));
        assert_eq!(parse_svix_url(&raw).unwrap().token.expose_secret(), "appsk_>>>???~~~");
        // Unencoded base64 in the fragment works too, and so does a `+` a form decoder made a space.
        let raw = format!("https://app.svix.com/login#key={b64}");
        assert_eq!(parse_svix_url(&raw).unwrap().app_id, "app_x");
        let raw = format!("https://app.svix.com/login#other=1&key={}", b64.replace('+', " "));
        assert_eq!(parse_svix_url(&raw).unwrap().app_id, "app_x");
        // URL-safe alphabet without padding.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert_eq!(parse_svix_url(&format!("https://x#key={url_safe}")).unwrap().app_id, "app_x");
    }

    #[test]
    fn region_is_optional() {
        let raw = url_with_key(&format!(r#"{{"appId":"app_1","token":"{TOKEN}"}}"#));
        assert_eq!(parse_svix_url(&raw).unwrap().region, None);
        let raw = url_with_key(&format!(r#"{{"appId":"app_1","token":"{TOKEN}","region":""}}"#));
        assert_eq!(parse_svix_url(&raw).unwrap().region, None);
    }

    #[test]
    fn refuses_bad_svix_urls_without_quoting_them() {
        let cases = [
            ("https://app.svix.com/login".to_owned(), SvixUrlError::NoKey),
            ("https://app.svix.com/login#token=abc".to_owned(), SvixUrlError::NoKey),
            (format!("https://app.svix.com/login#key=%%%{TOKEN}!!"), SvixUrlError::NotBase64),
            (url_with_key("not json"), SvixUrlError::NotJson),
            (url_with_key(r#"["appId"]"#), SvixUrlError::NotJson),
            (url_with_key(&format!(r#"{{"token":"{TOKEN}"}}"#)), SvixUrlError::MissingField("appId")),
            (url_with_key(r#"{"appId":"app_1"}"#), SvixUrlError::MissingField("token")),
            (url_with_key(&format!(r#"{{"appId":"app/../x","token":"{TOKEN}"}}"#)), SvixUrlError::BadField("appId")),
            (url_with_key(&format!(r#"{{"appId":"","token":"{TOKEN}"}}"#)), SvixUrlError::BadField("appId")),
            (url_with_key(r#"{"appId":"app_1","token":"a b"}"#), SvixUrlError::BadField("token")),
            (url_with_key(r#"{"appId":"app_1","token":""}"#), SvixUrlError::BadField("token")),
        ];
        for (raw, expected) in cases {
            let error = parse_svix_url(&raw).unwrap_err();
            assert_eq!(error, expected, "{raw}");
            assert!(!error.to_string().contains(TOKEN));
        }
    }

    #[test]
    fn regional_hosts_follow_svix() {
        assert_eq!(regional_host(Some("us")).as_str(), "https://api.us.svix.com/");
        assert_eq!(regional_host(Some("eu")).as_str(), "https://api.eu.svix.com/");
        assert_eq!(regional_host(Some("EU")).as_str(), "https://api.eu.svix.com/");
        assert_eq!(regional_host(Some("in")).as_str(), "https://api.in.svix.com/");
        assert_eq!(regional_host(Some("ca")).as_str(), "https://api.ca.svix.com/");
        assert_eq!(regional_host(Some("au")).as_str(), "https://api.au.svix.com/");
        assert_eq!(regional_host(None).as_str(), "https://api.svix.com/");
        // An unknown region never becomes part of a host name.
        assert_eq!(regional_host(Some("evil.example/")).as_str(), "https://api.svix.com/");
        let sandbox = Url::parse("http://127.0.0.1:4100").unwrap();
        assert_eq!(api_base(Some(&sandbox), Some("eu")), sandbox);
        assert_eq!(api_base(None, Some("eu")).as_str(), "https://api.eu.svix.com/");
    }

    #[test]
    fn fingerprints_match_the_repo_extractor() {
        // sha256("abc"), the extractor's own test vector, applies to the whole string.
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(b"whsec_abc")));
        assert_eq!(secret_fingerprint("whsec_abc"), expected);
        assert_eq!(secret_fingerprint("abc"), expected, "a bare Svix key gets its whsec_ prefix");
        assert_eq!(secret_fingerprint("whpk_abc"), format!("sha256:{}", hex::encode(Sha256::digest(b"whpk_abc"))));
        let fp = secret_fingerprint("whsec_U2FuZGJveE1hdGNoaW5nRW5kcG9pbnRLZXkwMQ==");
        assert!(
            fp.starts_with("sha256:")
                && fp.len() == 71
                && fp[7..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    fn out(id: &str) -> EndpointOut {
        EndpointOut {
            id: id.into(),
            url: format!("https://acme.com/{id}"),
            disabled: None,
            filter_types: None,
            event_types: None,
        }
    }

    #[tokio::test]
    async fn pagination_follows_the_iterator_until_done() {
        let calls = Cell::new(0);
        let pages = paginate(|iterator| {
            calls.set(calls.get() + 1);
            async move {
                Ok(match iterator.as_deref() {
                    None => EndpointPage {
                        data: vec![out("ep_1"), out("ep_2")],
                        iterator: Some("ep_2".into()),
                        done: false,
                    },
                    Some("ep_2") => EndpointPage { data: vec![out("ep_3")], iterator: Some("ep_3".into()), done: true },
                    other => panic!("unexpected iterator {other:?}"),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(pages.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ep_1", "ep_2", "ep_3"]);
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test]
    async fn pagination_stops_after_max_pages() {
        let calls = Cell::new(0);
        let result = paginate(|_| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                Ok(EndpointPage { data: vec![out(&format!("ep_{n}"))], iterator: Some(format!("ep_{n}")), done: false })
            }
        })
        .await;
        assert!(result.unwrap_err().contains("more than 20 pages"));
        assert_eq!(calls.get(), MAX_PAGES);
    }

    #[tokio::test]
    async fn pagination_stops_when_the_iterator_does_not_advance() {
        for (data, iterator) in [
            (vec![out("ep_1")], None),
            (vec![out("ep_1")], Some("ep_1".to_owned())), // the same iterator twice
            (vec![], Some("ep_9".to_owned())),            // an empty page that is not done
            (vec![out("ep_1")], Some("ep_1&limit=1".to_owned())),
        ] {
            let calls = Cell::new(0);
            let result = paginate(|previous| {
                calls.set(calls.get() + 1);
                let data = if previous.is_some() { vec![out("ep_2")] } else { data.clone() };
                let iterator = iterator.clone();
                async move { Ok(EndpointPage { data, iterator, done: false }) }
            })
            .await;
            assert!(result.unwrap_err().contains("no usable next page"));
            assert!(calls.get() <= 2);
        }
    }

    #[tokio::test]
    async fn pagination_passes_page_errors_on() {
        let result =
            paginate(|_| async { Err::<EndpointPage, _>("Svix endpoint list: answered HTTP 500".to_owned()) }).await;
        assert_eq!(result.unwrap_err(), "Svix endpoint list: answered HTTP 500");
    }

    #[test]
    fn endpoint_shape_follows_the_reference() {
        // Svix omits eventTypes for an endpoint receiving everything; disabled defaults to false.
        let page: EndpointPage = serde_json::from_value(serde_json::json!({
            "data": [
                {"id": "ep_1", "url": "https://acme.com/api/webhooks/clerk/", "metadata": {}, "description": "",
                 "createdAt": "2026-03-02T09:00:00.000Z", "updatedAt": "2026-03-02T09:00:00.000Z"},
                {"id": "ep_2", "url": "https://acme.com/x", "disabled": true, "eventTypes": ["user.created"],
                 "metadata": {}, "description": "", "createdAt": "2026-03-02T09:00:00.000Z",
                 "updatedAt": "2026-03-02T09:00:00.000Z"}
            ],
            "iterator": "ep_2", "prevIterator": "-ep_1", "done": true
        }))
        .unwrap();
        let endpoints: Vec<WebhookEndpoint> = page.data.into_iter().map(to_endpoint).collect();
        assert_eq!(endpoints[0].path.as_deref(), Some("/api/webhooks/clerk"));
        assert!(!endpoints[0].disabled);
        assert_eq!(endpoints[0].event_types, None);
        assert!(endpoints[1].disabled);
        assert_eq!(endpoints[1].event_types, Some(vec!["user.created".to_owned()]));
        assert_eq!(endpoints[1].secret_fingerprint, None);
    }

    #[test]
    fn the_live_filter_types_name_is_read_first() {
        let page: EndpointPage = serde_json::from_value(serde_json::json!({
            "data": [
                {"id": "ep_1", "url": "https://acme.com/a", "filterTypes": ["user.created"]},
                {"id": "ep_2", "url": "https://acme.com/b", "filterTypes": ["user.deleted"],
                 "eventTypes": ["user.created"]},
                {"id": "ep_3", "url": "https://acme.com/c", "eventTypes": ["session.created"]},
                {"id": "ep_4", "url": "https://acme.com/d", "filterTypes": null}
            ],
            "iterator": null, "done": true
        }))
        .unwrap();
        let endpoints: Vec<WebhookEndpoint> = page.data.into_iter().map(to_endpoint).collect();
        assert_eq!(endpoints[0].event_types, Some(vec!["user.created".to_owned()]));
        assert_eq!(endpoints[1].event_types, Some(vec!["user.deleted".to_owned()]));
        assert_eq!(endpoints[2].event_types, Some(vec!["session.created".to_owned()]));
        assert_eq!(endpoints[3].event_types, None);
        assert!(!endpoints[0].receives("user.deleted"));
    }

    /// No Svix call outside `svix.list_endpoints` and `svix.endpoint_secret` can be made: refused by `send` before any connection.
    #[tokio::test]
    async fn send_refuses_every_svix_call_outside_the_allowlist() {
        use crate::configuration::Settings;
        use crate::credentials::secret::ClerkSecretKey;
        use crate::fetch::http::HttpLayer;
        use crate::retry::RetryPolicy;

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let settings = Settings::load_from(&dir, "local").unwrap();
        let http = HttpLayer::new(
            &settings.http,
            Url::parse("https://api.clerk.com").unwrap(),
            "2026-05-12",
            50,
            RetryPolicy::immediate(1),
        )
        .unwrap();
        let key = ClerkSecretKey::from_plaintext(b"sk_live_UnitTestKey".to_vec()).unwrap();
        let mut calls = http.session("p/i".into(), &key);
        calls.set_svix(regional_host(Some("eu")), SecretString::from(TOKEN));

        let svix = |path: &str| calls.svix_url(path).unwrap();
        let mut with_query = svix("/api/v1/app/app_1/endpoint");
        with_query.set_query(Some("limit=250&order=descending"));
        let refused = [
            (CallMethod::Post, svix("/api/v1/app/app_1/endpoint")),
            (CallMethod::Get, svix("/api/v1/app/app_1/endpoint/ep_1/secret/rotate")),
            (CallMethod::Post, svix("/api/v1/app/app_1/endpoint/ep_1/secret/rotate")),
            (CallMethod::Get, svix("/api/v1/app/app_1/endpoint/ep_1")),
            (CallMethod::Get, svix("/api/v1/app/app_1/msg")),
            (CallMethod::Get, svix("/api/v1/app")),
            (CallMethod::Get, svix("/api/v1/app/app_1/endpoint/../../app")),
            (CallMethod::Post, svix("/v1/webhooks/svix_url")),
            (CallMethod::Get, with_query),
            // A Svix path on the Backend API host, and the app portal itself.
            (CallMethod::Get, calls.backend_url("/api/v1/app/app_1/endpoint")),
            (CallMethod::Get, calls.backend_url("/api/v1/app/app_1/endpoint/ep_1/secret")),
            (CallMethod::Get, Url::parse("https://app.svix.com/login").unwrap()),
            (CallMethod::Get, Url::parse("https://api.us.svix.com/api/v1/app/app_1/endpoint").unwrap()),
        ];
        for (method, url) in refused {
            let shown = format!("{} {url}", method.as_str());
            match calls.send(method, url).await {
                Err(CallError::NotAllowed(_)) => {}
                other => panic!("{shown} was not refused by the allowlist: {other:?}"),
            }
        }
        assert!(calls.tallies().is_empty(), "nothing was sent");
        // The allowed shapes pass the same gate (they are not sent here).
        assert_eq!(calls.authorize(CallMethod::Get, &svix("/api/v1/app/app_1/endpoint")).unwrap().row, 6);
        assert_eq!(calls.authorize(CallMethod::Get, &svix("/api/v1/app/app_1/endpoint/ep_1/secret")).unwrap().row, 7);
    }

    #[test]
    fn secrets_are_wanted_only_for_secrets_the_repo_holds() {
        use crate::audit::artifact::{ARTIFACT_SCHEMA, Verification, WebhookHandler};
        let handler = |route: Option<&str>, source: Option<SecretSource>| WebhookHandler {
            file: "a.ts".into(),
            line: 1,
            framework: "express".into(),
            route: route.map(str::to_owned),
            verification: Verification::Svix,
            secret_source: source,
            events: vec![],
            registration: None,
            reserialized_body: false,
            acks_failed_verification: false,
        };
        let artifact = RepoArtifact {
            schema: ARTIFACT_SCHEMA.into(),
            repo: None,
            commit: None,
            scanned_at: None,
            committed_secrets: vec![],
            key_references: vec![],
            webhook_handlers: vec![
                handler(Some("/a"), Some(SecretSource::EnvVar { env_var: "X".into() })),
                handler(Some("/b"), Some(SecretSource::LiteralFingerprint { literal_fingerprint: "sha256:00".into() })),
                handler(None, Some(SecretSource::LiteralFingerprint { literal_fingerprint: "sha256:01".into() })),
                handler(Some("/c"), None),
            ],
        };
        assert_eq!(secret_wants(Some(&artifact)), vec![Some("/b".to_owned()), None]);
        assert!(secret_wants(None).is_empty());
        // A committed env file assigning a `whsec_` value to the variable a handler reads makes it wanted;
        // a live secret key or another variable does not.
        let committed = |variable: &str, kind| crate::audit::artifact::CommittedSecret {
            file: ".env".into(),
            line: 1,
            variable: variable.into(),
            kind,
            fingerprint: "sha256:02".into(),
        };
        let mut with_env = artifact.clone();
        with_env.committed_secrets = vec![committed("Y", CommittedSecretKind::WebhookSecret)];
        with_env.committed_secrets.push(committed("X", CommittedSecretKind::LiveSecretKey));
        assert_eq!(secret_wants(Some(&with_env)), vec![Some("/b".to_owned()), None]);
        with_env.committed_secrets.push(committed("X", CommittedSecretKind::WebhookSecret));
        assert_eq!(secret_wants(Some(&with_env)), vec![Some("/a".to_owned()), Some("/b".to_owned()), None]);
    }
}
