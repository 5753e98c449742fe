//! The published list of outbound calls. This table is the only source of truth: the
//! HTTP layer refuses any request that matches no row before connecting, and the `endpoints`
//! subcommand prints it.

use std::fmt;

/// Which host a call goes to. Each host kind has its own credential; the layer never mixes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// Clerk's Backend API (`https://api.clerk.com`): the secret key goes here and only here.
    BackendApi,
    /// The instance's Frontend API host, as `GET /v1/domains` names it: no credential.
    FrontendApi,
    /// The Svix API (`api.svix.com` or its regional host): the app-portal token only.
    SvixApi,
    /// DNS, through the configured resolver.
    Dns,
}

impl HostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::BackendApi => "clerk-backend-api",
            HostKind::FrontendApi => "clerk-frontend-api",
            HostKind::SvixApi => "svix-api",
            HostKind::Dns => "dns",
        }
    }
}

/// What a call presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAuth {
    /// `Authorization: Bearer <secret key>` and `Clerk-API-Version`.
    SecretKey,
    /// `Authorization: Bearer <app-portal token>`.
    SvixToken,
    None,
}

/// HTTP method of a row (DNS rows have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMethod {
    Get,
    Post,
    DnsCname,
}

impl CallMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CallMethod::Get => "GET",
            CallMethod::Post => "POST",
            CallMethod::DnsCname => "CNAME",
        }
    }
}

/// One allowed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedCall {
    /// The row number in the published list (`clerk-audit endpoints`), used in events and metrics.
    pub row: u8,
    /// A stable short name for logs and metrics.
    pub name: &'static str,
    pub method: CallMethod,
    pub host: HostKind,
    /// Path template; `{name}` matches one path segment.
    pub path: &'static str,
    /// Query parameters the call may carry.
    pub query: &'static [&'static str],
    pub auth: CallAuth,
    pub purpose: &'static str,
}

/// Every allowed call, by name: code that tallies or checks a call names it with this enum, so no lookup can
/// miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    ClerkInstance,
    ClerkUsersCount,
    ClerkDomains,
    ClerkSvixUrl,
    ClerkFrontendEnvironment,
    SvixListEndpoints,
    SvixEndpointSecret,
    DnsCname,
}

impl Call {
    /// The row of this call.
    pub const fn spec(self) -> &'static AllowedCall {
        match self {
            Call::ClerkInstance => &CLERK_INSTANCE,
            Call::ClerkUsersCount => &CLERK_USERS_COUNT,
            Call::ClerkDomains => &CLERK_DOMAINS,
            Call::ClerkSvixUrl => &CLERK_SVIX_URL,
            Call::ClerkFrontendEnvironment => &CLERK_FRONTEND_ENVIRONMENT,
            Call::SvixListEndpoints => &SVIX_LIST_ENDPOINTS,
            Call::SvixEndpointSecret => &SVIX_ENDPOINT_SECRET,
            Call::DnsCname => &DNS_CNAME,
        }
    }
}

const CLERK_INSTANCE: AllowedCall = AllowedCall {
    row: 1,
    name: "clerk.instance",
    method: CallMethod::Get,
    host: HostKind::BackendApi,
    path: "/v1/instance",
    query: &[],
    auth: CallAuth::SecretKey,
    purpose: "environment_type, allowed_origins",
};

const CLERK_USERS_COUNT: AllowedCall = AllowedCall {
    row: 2,
    name: "clerk.users_count",
    method: CallMethod::Get,
    host: HostKind::BackendApi,
    path: "/v1/users/count",
    query: &["last_active_at_since"],
    auth: CallAuth::SecretKey,
    purpose: "user count (a number, no user data)",
};

const CLERK_DOMAINS: AllowedCall = AllowedCall {
    row: 3,
    name: "clerk.domains",
    method: CallMethod::Get,
    host: HostKind::BackendApi,
    path: "/v1/domains",
    query: &[],
    auth: CallAuth::SecretKey,
    purpose: "primary domain, frontend_api_url, cname_targets",
};

const CLERK_SVIX_URL: AllowedCall = AllowedCall {
    row: 4,
    name: "clerk.svix_url",
    method: CallMethod::Post,
    host: HostKind::BackendApi,
    path: "/v1/webhooks/svix_url",
    query: &[],
    auth: CallAuth::SecretKey,
    purpose: "short-lived Svix app-portal token (creates no Clerk configuration), for the two Svix calls only",
};

const CLERK_FRONTEND_ENVIRONMENT: AllowedCall = AllowedCall {
    row: 5,
    name: "clerk.frontend_environment",
    method: CallMethod::Get,
    host: HostKind::FrontendApi,
    path: "/v1/environment",
    query: &[],
    auth: CallAuth::None,
    purpose: "sign-in factors, test mode, HIBP, lockout, CAPTCHA: user_settings, auth_config (production only)",
};

const SVIX_LIST_ENDPOINTS: AllowedCall = AllowedCall {
    row: 6,
    name: "svix.list_endpoints",
    method: CallMethod::Get,
    host: HostKind::SvixApi,
    path: "/api/v1/app/{app_id}/endpoint",
    query: &["limit", "iterator"],
    auth: CallAuth::SvixToken,
    purpose: "webhook endpoints: url, disabled, event types",
};

const SVIX_ENDPOINT_SECRET: AllowedCall = AllowedCall {
    row: 7,
    name: "svix.endpoint_secret",
    method: CallMethod::Get,
    host: HostKind::SvixApi,
    path: "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
    query: &[],
    auth: CallAuth::SvixToken,
    purpose: "only when the repo holds a written whsec_ to compare with; hashed at once, never kept",
};

const DNS_CNAME: AllowedCall = AllowedCall {
    row: 8,
    name: "dns.cname",
    method: CallMethod::DnsCname,
    host: HostKind::Dns,
    path: "<cname_targets host>",
    query: &[],
    auth: CallAuth::None,
    purpose: "email sender / DKIM verification of the domain's cname_targets",
};

/// The allowlist, in row order.
pub const ALLOWLIST: &[AllowedCall] = &[
    CLERK_INSTANCE,
    CLERK_USERS_COUNT,
    CLERK_DOMAINS,
    CLERK_SVIX_URL,
    CLERK_FRONTEND_ENVIRONMENT,
    SVIX_LIST_ENDPOINTS,
    SVIX_ENDPOINT_SECRET,
    DNS_CNAME,
];

/// Why a request matched no row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the allowlist: {method} {host} {path} matches no allowed call")]
pub struct NotAllowed {
    pub method: &'static str,
    pub host: &'static str,
    pub path: String,
}

/// Finds the row a request matches: same method and host kind, the path matching the template segment
/// by segment, and every query parameter one the row allows.
pub fn match_request<'q>(
    method: CallMethod,
    host: HostKind,
    path: &str,
    query_names: impl Iterator<Item = &'q str> + Clone,
) -> Result<&'static AllowedCall, NotAllowed> {
    ALLOWLIST
        .iter()
        .find(|call| {
            call.method == method
                && call.host == host
                && path_matches(call.path, path)
                && query_names.clone().all(|name| call.query.contains(&name))
        })
        .ok_or_else(|| NotAllowed {
            method: method.as_str(),
            host: host.as_str(),
            path: path.chars().take(200).collect(),
        })
}

fn path_matches(template: &str, path: &str) -> bool {
    let mut template_segments = template.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (template_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// The table as text, for `clerk-audit endpoints`.
pub struct AllowlistTable;

impl fmt::Display for AllowlistTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<3} {:<6} {:<19} {:<52} {:<11} purpose", "#", "method", "host", "path", "auth")?;
        for call in ALLOWLIST {
            let auth = match call.auth {
                CallAuth::SecretKey => "secret-key",
                CallAuth::SvixToken => "svix-token",
                CallAuth::None => "none",
            };
            let mut path = call.path.to_owned();
            if !call.query.is_empty() {
                path.push_str(&format!(" [?{}]", call.query.join(",")));
            }
            writeln!(
                f,
                "{:<3} {:<6} {:<19} {:<52} {:<11} {}",
                call.row,
                call.method.as_str(),
                call.host.as_str(),
                path,
                auth,
                call.purpose
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_names_its_own_row_in_order() {
        let calls = [
            Call::ClerkInstance,
            Call::ClerkUsersCount,
            Call::ClerkDomains,
            Call::ClerkSvixUrl,
            Call::ClerkFrontendEnvironment,
            Call::SvixListEndpoints,
            Call::SvixEndpointSecret,
            Call::DnsCname,
        ];
        assert_eq!(calls.len(), ALLOWLIST.len());
        for (index, call) in calls.into_iter().enumerate() {
            assert_eq!(call.spec(), &ALLOWLIST[index]);
            assert_eq!(usize::from(call.spec().row), index + 1);
        }
    }

    fn matches(method: CallMethod, host: HostKind, path: &str, query: &[&str]) -> Option<u8> {
        match_request(method, host, path, query.iter().copied()).ok().map(|c| c.row)
    }

    #[test]
    fn each_row_matches_its_own_calls() {
        assert_eq!(matches(CallMethod::Get, HostKind::BackendApi, "/v1/instance", &[]), Some(1));
        assert_eq!(
            matches(CallMethod::Get, HostKind::BackendApi, "/v1/users/count", &["last_active_at_since"]),
            Some(2)
        );
        assert_eq!(matches(CallMethod::Get, HostKind::BackendApi, "/v1/domains", &[]), Some(3));
        assert_eq!(matches(CallMethod::Post, HostKind::BackendApi, "/v1/webhooks/svix_url", &[]), Some(4));
        assert_eq!(matches(CallMethod::Get, HostKind::FrontendApi, "/v1/environment", &[]), Some(5));
        assert_eq!(
            matches(CallMethod::Get, HostKind::SvixApi, "/api/v1/app/app_1/endpoint", &["limit", "iterator"]),
            Some(6)
        );
        assert_eq!(matches(CallMethod::Get, HostKind::SvixApi, "/api/v1/app/app_1/endpoint/ep_2/secret", &[]), Some(7));
    }

    #[test]
    fn refuses_everything_else() {
        // User data, writes, other hosts, extra query parameters, path tricks.
        assert_eq!(matches(CallMethod::Get, HostKind::BackendApi, "/v1/users", &[]), None);
        assert_eq!(matches(CallMethod::Post, HostKind::BackendApi, "/v1/instance", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::FrontendApi, "/v1/instance", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::SvixApi, "/v1/instance", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::BackendApi, "/v1/users/count", &["email_address"]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::BackendApi, "/v1/instance/", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::SvixApi, "/api/v1/app/../endpoint", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::SvixApi, "/api/v1/app//endpoint", &[]), None);
        assert_eq!(matches(CallMethod::Get, HostKind::SvixApi, "/api/v1/app/a/endpoint/b/secret/rotate", &[]), None);
    }

    #[test]
    fn the_secret_key_is_only_ever_sent_to_the_backend_api() {
        for call in ALLOWLIST {
            if call.auth == CallAuth::SecretKey {
                assert_eq!(call.host, HostKind::BackendApi, "{}", call.name);
            }
            if call.auth == CallAuth::SvixToken {
                assert_eq!(call.host, HostKind::SvixApi, "{}", call.name);
            }
        }
    }

    #[test]
    fn printed_table_lists_every_row() {
        let text = AllowlistTable.to_string();
        for call in ALLOWLIST {
            assert!(text.contains(call.path), "{}", call.path);
        }
    }
}
