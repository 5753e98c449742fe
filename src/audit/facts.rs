//! What the worker learned about a Clerk instance, as plain data: the input of the checks.
//!
//! [`crate::fetch`] fills these from the allowlisted calls and DNS; the checks in [`crate::audit::checks`] read
//! them without any I/O. A fact that could not be had is kept as [`Fact::Unavailable`] with the reason, so
//! a check that needs it reports `error` instead of passing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A fact the worker tried to learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum Fact<T> {
    /// Learned.
    Known(T),
    /// Not looked up because it does not apply (a development instance's Frontend API settings).
    NotApplicable(String),
    /// Looked up and failed (address refused, timeout): a check that needs it is an `error`.
    Unavailable(String),
}

impl<T> Fact<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(value) => Some(value),
            _ => None,
        }
    }
}

/// Clerk's `environment_type` of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceEnvironment {
    Development,
    Production,
    Staging,
    Other(String),
}

impl InstanceEnvironment {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "development" => Self::Development,
            "production" => Self::Production,
            "staging" => Self::Staging,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Other(other) => other,
        }
    }
}

/// From `GET /v1/instance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub id: String,
    pub environment: InstanceEnvironment,
    /// The origins allowed to call the Frontend API (`null` in the answer: none set, an empty list);
    /// `None` when the answer lacked the field, so a check that reads it reports `error`.
    pub allowed_origins: Option<Vec<String>>,
}

/// One CNAME record Clerk asks the customer to set (from `GET /v1/domains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnameTarget {
    pub host: String,
    pub value: String,
    pub required: bool,
}

/// The instance's primary domain (from `GET /v1/domains`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimaryDomain {
    pub name: String,
    pub frontend_api_url: String,
    pub cname_targets: Vec<CnameTarget>,
}

/// The instance's sign-in and attack-protection settings (from the Frontend API's `GET /v1/environment`).
/// The optional fields are `None` when the answer lacked them: the checks that read one report `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSettings {
    /// `user_settings.sign_in.second_factor.required`.
    pub second_factor_required: bool,
    /// Attributes with `used_for_second_factor: true` (e.g. `authenticator_app`, `phone_number`), sorted.
    pub second_factors_available: Vec<String>,
    /// `auth_config.test_mode`: test emails and phone numbers with fixed codes are accepted.
    #[serde(default)]
    pub test_mode: Option<bool>,
    /// `user_settings.attributes.password`: enabled and used for the first factor.
    #[serde(default)]
    pub password_sign_in: Option<bool>,
    /// `user_settings.password_settings.disable_hibp`: breached-password screening is off.
    #[serde(default)]
    pub disable_hibp: Option<bool>,
    /// `user_settings.attack_protection.user_lockout.enabled`.
    #[serde(default)]
    pub user_lockout_enabled: Option<bool>,
    /// `user_settings.sign_up.captcha_enabled`.
    #[serde(default)]
    pub captcha_enabled: Option<bool>,
    /// `user_settings.sign_up.mode`: `public`, `restricted` or `waitlist`.
    #[serde(default)]
    pub sign_up_mode: Option<String>,
}

/// What DNS says about one of the domain's CNAME targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DnsObservation {
    /// The CNAME points at the expected target.
    Matches,
    /// The name has CNAME records, none of them the expected target.
    Mismatch { found: Vec<String> },
    /// The name has no CNAME record (NXDOMAIN or no data).
    Missing,
    /// The lookup itself failed (timeout, server failure): nothing can be said.
    LookupFailed { reason: String },
}

/// One CNAME target and what DNS answered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordStatus {
    pub host: String,
    pub expected: String,
    pub observation: DnsObservation,
}

/// Everything the checks may know about the connected instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClerkFacts {
    pub instance: InstanceInfo,
    pub user_count: u64,
    pub primary_domain: Option<PrimaryDomain>,
    /// The Frontend API host (`host[:port]`, lowercase) of every domain of the instance, satellites
    /// included: what a publishable key of this instance decodes to.
    #[serde(default)]
    pub frontend_api_hosts: Vec<String>,
    /// `sha256:<hex>` of the connected secret key (never the key): compared with the fingerprints of the
    /// secret keys the repo scan found. `None` when it was not computed.
    #[serde(default)]
    pub secret_key_fingerprint: Option<String>,
    pub auth_settings: Fact<AuthSettings>,
    pub email_dns: Fact<Vec<DnsRecordStatus>>,
    /// Webhook endpoints (every instance kind: Svix serves development instances too).
    pub webhooks: Fact<WebhookFacts>,
}

impl ClerkFacts {
    pub fn is_production(&self) -> bool {
        self.instance.environment == InstanceEnvironment::Production
    }
}

/// The instance's webhook configuration on Svix (calls `clerk.svix_url`, `svix.list_endpoints`, `svix.endpoint_secret`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFacts {
    /// Whether the instance has a Svix app at all (`POST /v1/webhooks/svix_url` answered 400: it has none,
    /// so no webhook is set up).
    pub svix_app: bool,
    /// Every endpoint of the app, in the order Svix lists them.
    pub endpoints: Vec<WebhookEndpoint>,
}

impl WebhookFacts {
    /// The enabled endpoints whose URL path matches `route` (any enabled endpoint when the route is unknown).
    pub fn delivering_to<'a>(&'a self, route: Option<&'a str>) -> impl Iterator<Item = &'a WebhookEndpoint> + 'a {
        self.endpoints.iter().filter(move |endpoint| endpoint.delivers_to(route))
    }
}

/// One Svix endpoint: where Clerk delivers webhooks. Never holds a signing secret, only its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Svix's endpoint id (`ep_...`).
    pub id: String,
    /// The URL deliveries go to, as shown in evidence, tables and events: without userinfo, query string
    /// or fragment (see [`shown_endpoint_url`]), which often carry a credential of the receiver.
    pub url: String,
    /// The URL's path, percent-decoded, without trailing slashes (`/` for the root); `None` when the URL
    /// does not parse.
    pub path: Option<String>,
    pub disabled: bool,
    /// The event types the endpoint is limited to; `None` when it receives every event type.
    pub event_types: Option<Vec<String>>,
    /// `sha256:<hex>` of the endpoint's `whsec_` signing secret, when it was read (only to compare with a
    /// secret written in the repo).
    pub secret_fingerprint: Option<String>,
}

impl WebhookEndpoint {
    /// Whether this endpoint delivers to a handler serving `route`: it is enabled and its URL path matches
    /// the route (any path when the route is unknown).
    pub fn delivers_to(&self, route: Option<&str>) -> bool {
        if self.disabled {
            return false;
        }
        match (route, self.path.as_deref()) {
            (None, _) => true,
            (Some(route), Some(path)) => route_matches(route, path),
            (Some(_), None) => false,
        }
    }

    /// Whether the endpoint receives events of `event_type`.
    pub fn receives(&self, event_type: &str) -> bool {
        self.event_types.as_ref().is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

/// `host[:port]` of a URL, lowercase, as a publishable key names its Frontend API host; `None` without a host.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    Some(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The path of an endpoint URL as [`WebhookEndpoint::path`] holds it.
pub fn endpoint_path(url: &str) -> Option<String> {
    path_of(&url::Url::parse(url).ok()?)
}

fn path_of(parsed: &url::Url) -> Option<String> {
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let decoded = percent_decode(parsed.path());
    Some(normalize_path(&decoded))
}

/// [`endpoint_path`] and [`shown_endpoint_url`] of one URL, parsing it once (an app can list hundreds of
/// endpoints, and parsing is most of the cost of reading them).
pub fn endpoint_path_and_shown_url(raw: &str) -> (Option<String>, String) {
    let parsed = url::Url::parse(raw).ok();
    let path = parsed.as_ref().and_then(path_of);
    // The shown URL is parsed from the trimmed text; without surrounding whitespace that is the same parse.
    let shown = if raw.trim().len() == raw.len() { shown_of(parsed, raw) } else { shown_endpoint_url(raw) };
    (path, shown)
}

/// An endpoint URL fit to show: scheme, host, port and path only. Userinfo, query string and fragment are
/// dropped (receivers put tokens there: `https://user:pass@host/hook?token=...`). A URL that does not parse
/// as one with a host is cut the same way by hand: at the first `?` or `#`, and everything up to the last `@` of the authority.
pub fn shown_endpoint_url(raw: &str) -> String {
    shown_of(url::Url::parse(raw.trim()).ok(), raw)
}

/// [`shown_endpoint_url`] of `raw`, given its parse.
fn shown_of(parsed: Option<url::Url>, raw: &str) -> String {
    if let Some(mut url) = parsed
        && url.has_host()
    {
        // Each setter rewrites the serialization, so only the parts present are removed; most endpoint URLs
        // have none, and their serialization is taken as it is (an app can list hundreds).
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        // Tested on the text: a `?` in a fragment only costs a rewrite that changes nothing.
        if url.as_str().contains('?') {
            url.set_query(None);
        }
        if url.fragment().is_some() {
            url.set_fragment(None);
        }
        return url.into();
    }
    let cut = raw.find(['?', '#']).map_or(raw, |at| &raw[..at]);
    let (scheme, rest) = match cut.find("://") {
        Some(at) => cut.split_at(at + 3),
        None => ("", cut),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}{host}{path}")
}

/// Without trailing slashes, with a leading one: `api/hook/` -> `/api/hook`, `` and `/` -> `/`.
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim().trim_end_matches('/');
    if trimmed.starts_with('/') { trimmed.to_owned() } else { format!("/{trimmed}") }
}

/// Whether a handler's route (as the repo extractor writes it: `:name` for one dynamic segment, `*name`
/// for a catch-all) matches an endpoint's URL path. Trailing slashes do not matter; case does.
pub fn route_matches(route: &str, path: &str) -> bool {
    let route = normalize_path(route);
    let path = normalize_path(path);
    let route_segments: Vec<&str> = route.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let path_segments: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let mut index = 0;
    for (position, segment) in route_segments.iter().enumerate() {
        if segment.starts_with('*') {
            // A catch-all takes the rest, when it is the route's last segment.
            return position + 1 == route_segments.len();
        }
        let Some(actual) = path_segments.get(index) else { return false };
        if !(segment.starts_with(':') && segment.len() > 1) && segment != actual {
            return false;
        }
        index += 1;
    }
    index == path_segments.len()
}

/// Decodes `%XX` escapes (a `+` stays a `+`); invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, disabled: bool) -> WebhookEndpoint {
        WebhookEndpoint {
            id: "ep_1".into(),
            url: url.into(),
            path: endpoint_path(url),
            disabled,
            event_types: None,
            secret_fingerprint: None,
        }
    }

    #[test]
    fn shown_endpoint_urls_lose_userinfo_query_and_fragment() {
        for (raw, shown) in [
            ("https://acme.com/api/webhooks/clerk", "https://acme.com/api/webhooks/clerk"),
            ("https://user:pa55@acme.com:8443/hook?token=t0k#frag", "https://acme.com:8443/hook"),
            ("https://user@acme.com/hook?", "https://acme.com/hook"),
            ("https://acme.com?token=t0k", "https://acme.com/"),
            ("https://acme.com/hook#t0k", "https://acme.com/hook"),
            ("https://:pa55@acme.com/hook", "https://acme.com/hook"),
            ("HTTPS://ACME.com:443/Hook", "https://acme.com/Hook"),
            // Does not parse (bad port): cut by hand.
            ("https://user:pa55@acme.com:99999/hook?token=t0k", "https://acme.com:99999/hook"),
            ("user:pa55@acme.com/hook#t0k", "acme.com/hook"),
            ("https://a@b@acme.com/x?y", "https://acme.com/x"),
        ] {
            assert_eq!(shown_endpoint_url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn one_parse_gives_the_same_path_and_shown_url_as_two() {
        for raw in [
            "https://acme.com/api/webhooks/clerk/",
            "https://user:pa55@acme.com:8443/hook?token=t0k#frag",
            "https://acme.com?token=t0k",
            "https://user:pa55@acme.com:99999/hook?token=t0k",
            "user:pa55@acme.com/hook#t0k",
            "https://acme.com/a%20b?x=1#f",
            "ftp://acme.com/x",
            "not a url",
            "  https://acme.com/padded/  ",
            "https://acme.com/nbsp\u{a0}",
            "",
        ] {
            assert_eq!(endpoint_path_and_shown_url(raw), (endpoint_path(raw), shown_endpoint_url(raw)), "{raw:?}");
        }
    }

    #[test]
    fn endpoint_paths_are_decoded_and_trimmed() {
        assert_eq!(endpoint_path("https://acme.com/api/webhooks/clerk/").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(endpoint_path("https://acme.com").as_deref(), Some("/"));
        assert_eq!(endpoint_path("https://acme.com/a%20b?x=1#f").as_deref(), Some("/a b"));
        assert_eq!(endpoint_path("not a url"), None);
        assert_eq!(endpoint_path("ftp://acme.com/x"), None);
    }

    #[test]
    fn routes_match_paths_segment_by_segment() {
        assert!(route_matches("/api/webhooks/clerk", "/api/webhooks/clerk"));
        assert!(route_matches("/api/webhooks/clerk/", "/api/webhooks/clerk"));
        assert!(route_matches("api/webhooks/clerk", "/api/webhooks/clerk/"));
        assert!(!route_matches("/api/webhooks/clerk", "/api/webhooks/clerk-old"));
        assert!(!route_matches("/api/webhooks/clerk", "/api/webhooks"));
        assert!(!route_matches("/api/webhooks", "/api/webhooks/clerk"));
        assert!(!route_matches("/api/Webhooks/clerk", "/api/webhooks/clerk"));
        assert!(route_matches("/api/tenants/:id/hooks", "/api/tenants/t7/hooks"));
        assert!(!route_matches("/api/tenants/:id/hooks", "/api/tenants/hooks"));
        assert!(route_matches("/api/hooks/*rest", "/api/hooks/a/b"));
        assert!(route_matches("/api/hooks/*", "/api/hooks"));
        assert!(!route_matches("/api/hooks/*rest", "/api/other/a"));
        assert!(route_matches("/", "/"));
        assert!(!route_matches("/", "/x"));
    }

    #[test]
    fn only_enabled_endpoints_deliver() {
        assert!(endpoint("https://acme.com/api/webhooks/clerk", false).delivers_to(Some("/api/webhooks/clerk")));
        assert!(!endpoint("https://acme.com/api/webhooks/clerk", true).delivers_to(Some("/api/webhooks/clerk")));
        assert!(!endpoint("https://acme.com/api/webhooks/stripe", false).delivers_to(Some("/api/webhooks/clerk")));
        // Unknown route: any enabled endpoint counts.
        assert!(endpoint("https://acme.com/api/webhooks/stripe", false).delivers_to(None));
        assert!(!endpoint("https://acme.com/api/webhooks/stripe", true).delivers_to(None));
        assert!(!endpoint("garbage", false).delivers_to(Some("/")));
    }

    #[test]
    fn unfiltered_endpoints_receive_every_event() {
        let mut e = endpoint("https://acme.com/x", false);
        assert!(e.receives("user.created"));
        e.event_types = Some(vec!["user.created".into()]);
        assert!(e.receives("user.created"));
        assert!(!e.receives("user.deleted"));
    }

    #[test]
    fn percent_decoding_keeps_plus_and_bad_escapes() {
        assert_eq!(percent_decode("a%2Bb+c%3D%3d"), "a+b+c==");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("/plain/path"), "/plain/path");
        assert_eq!(percent_decode("/caf%C3%A9"), "/caf\u{e9}");
        assert_eq!(percent_decode("/bad%FFbyte"), "/bad\u{fffd}byte");
    }
}

/// What the scan called, by allowlist row: reported in the completed event's `calls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTally {
    pub row: u8,
    pub name: String,
    pub count: u32,
    /// Outcome (`"200"`, `"429"`, `"timeout"`, ...) -> count.
    pub outcomes: BTreeMap<String, u32>,
}

/// What the completed event says of the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// `development`, `production`, ...
    pub kind: String,
    pub user_count: u64,
    /// The primary domain's name, when there is one.
    pub domain: Option<String>,
}

impl ClerkFacts {
    /// The instance in three facts, for the event and the scan row.
    pub fn summary(&self) -> InstanceSummary {
        InstanceSummary {
            kind: self.instance.environment.as_str().to_owned(),
            user_count: self.user_count,
            domain: self.primary_domain.as_ref().map(|d| d.name.clone()),
        }
    }
}
