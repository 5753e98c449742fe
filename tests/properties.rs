//! Property tests of every decoder of outside input: the job decoder, the stored artifact decoder, the
//! `svix_url` parser and the Clerk/Svix response decoders. Bounded (a few hundred cases each) so they run in
//! `cargo test`. Properties: no input panics; well-formed input round-trips; an error never repeats a value
//! of the input. A failing case is saved by proptest in `tests/properties.proptest-regressions` (kept in
//! the repo, replayed first on every run).

use base64::Engine as _;
use clerk_audit::audit::artifact::{
    Confidence, KeyEnvironment, KeyKind, KeyReference, ReferenceContext, RepoArtifact, StoredArtifact,
};
use clerk_audit::fetch::clerk::{
    ClerkErrorsResponse, DomainsResponse, EnvironmentResponse, InstanceResponse, TotalCountResponse,
};
use clerk_audit::fetch::http::{CallError, decode_json};
use clerk_audit::fetch::svix::{EndpointPage, parse_svix_url};
use clerk_audit::intake::job::{self, InstanceName, ProjectId, ScanJob};
use clerk_audit::store::artifacts::{ListLengths, judge};
use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// The marker every generated string (value or key) carries, followed by a digit so that no key looks like
/// a schema field name: an error that holds it repeats input.
const MARK: &str = "LEAK";

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

/// Arbitrary JSON whose strings (values and keys) all carry [`MARK`].
fn marked_json() -> impl Strategy<Value = Value> {
    let marked = "[0-9][a-zA-Z0-9 _.:/-]{0,12}".prop_map(|s| format!("{MARK}{s}"));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        marked.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(marked.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A JSON object with the fields a decoder expects, each with an arbitrary (marked) value, plus noise.
fn shaped(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::collection::vec(marked_json(), fields.len()).prop_map(move |values| {
        let mut object = serde_json::Map::new();
        for (field, value) in fields.iter().zip(values) {
            object.insert((*field).to_owned(), value);
        }
        Value::Object(object)
    })
}

fn assert_decode_error_is_clean(result: Result<(), CallError>) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        let shown = format!("{error} {error:?}");
        prop_assert!(!shown.contains(MARK), "the error repeats input: {}", shown);
    }
    Ok(())
}

fn decode_all(body: &[u8]) -> Result<(), TestCaseError> {
    assert_decode_error_is_clean(decode_json::<InstanceResponse>(body).map(drop))?;
    assert_decode_error_is_clean(decode_json::<TotalCountResponse>(body).map(drop))?;
    assert_decode_error_is_clean(decode_json::<DomainsResponse>(body).map(drop))?;
    assert_decode_error_is_clean(decode_json::<EnvironmentResponse>(body).map(drop))?;
    assert_decode_error_is_clean(decode_json::<ClerkErrorsResponse>(body).map(drop))?;
    assert_decode_error_is_clean(decode_json::<EndpointPage>(body).map(drop))?;
    Ok(())
}

fn identifier() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,128}"
}

fn key_reference() -> impl Strategy<Value = KeyReference> {
    (
        prop_oneof![Just(KeyKind::Publishable), Just(KeyKind::Secret)],
        prop_oneof![Just(KeyEnvironment::Live), Just(KeyEnvironment::Test)],
        ".{0,40}",
        any::<u32>(),
        proptest::option::of("[A-Z_]{1,30}"),
        prop_oneof![
            Just(ReferenceContext::Production),
            Just(ReferenceContext::Development),
            Just(ReferenceContext::Test),
            Just(ReferenceContext::Example),
            Just(ReferenceContext::Unknown),
        ],
        proptest::option::of("[a-z0-9.-]{1,40}"),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(Confidence::High), Just(Confidence::Medium), Just(Confidence::Low)]),
    )
        .prop_map(|(kind, environment, file, line, variable, context, host, malformed, confidence)| KeyReference {
            kind,
            environment,
            file,
            line,
            variable,
            context,
            frontend_api_host: host,
            fingerprint: None,
            malformed,
            confidence,
        })
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: a job or a poison reason, never a panic.
    #[test]
    fn job_decoder_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = job::decode(&body, 64 * 1024);
    }

    /// Any JSON, with or without the job's fields: a job or a poison reason, never a panic.
    #[test]
    fn job_decoder_takes_any_json(
        value in prop_oneof![
            marked_json(),
            shaped(&["schema", "scan_id", "project_id", "instance_name", "key_ref", "requested_at", "repo_scan_id"]),
        ]
    ) {
        let _ = job::decode(value.to_string().as_bytes(), 64 * 1024);
    }

    /// A job as the orchestrator sends it decodes to itself.
    #[test]
    fn jobs_round_trip(
        scan in any::<u128>(),
        key in any::<u128>(),
        project in identifier(),
        instance in identifier(),
        repo_scan in proptest::option::of(identifier()),
        seconds in 0i64..4_000_000_000,
    ) {
        let job = ScanJob {
            scan_id: uuid::Uuid::from_u128(scan),
            project_id: ProjectId::parse(project).unwrap(),
            instance_name: InstanceName::parse(instance).unwrap(),
            key_ref: uuid::Uuid::from_u128(key),
            requested_at: chrono::DateTime::from_timestamp(seconds, 0).unwrap(),
            repo_scan_id: repo_scan,
        };
        let decoded = job::decode(job.to_message().to_string().as_bytes(), 64 * 1024);
        prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.scan_id, job.scan_id);
        prop_assert_eq!(decoded.project_id, job.project_id);
        prop_assert_eq!(decoded.instance_name, job.instance_name);
        prop_assert_eq!(decoded.key_ref, job.key_ref);
        prop_assert_eq!(decoded.requested_at, job.requested_at);
        prop_assert_eq!(decoded.repo_scan_id, job.repo_scan_id);
    }

    /// Any stored text is present or unreadable, never "no repo scan", never a panic.
    #[test]
    fn artifact_decoder_takes_any_text(
        text in prop_oneof![
            ".{0,400}",
            marked_json().prop_map(|v| v.to_string()),
            shaped(&["schema", "repo", "commit", "scanned_at", "key_references", "webhook_handlers"])
                .prop_map(|v| v.to_string()),
        ],
        counts in (0i64..20_000, 0i64..2_000, 0i64..2_000),
    ) {
        let lengths = ListLengths { key_references: counts.0, webhook_handlers: counts.1, committed_secrets: counts.2 };
        let stored = judge(text.len() as i64, lengths, Some(&text));
        prop_assert!(stored != StoredArtifact::Absent);
    }

    /// A well-formed artifact under the caps reads back as itself.
    #[test]
    fn artifacts_round_trip(references in proptest::collection::vec(key_reference(), 0..20)) {
        let artifact = RepoArtifact {
            schema: clerk_audit::audit::artifact::ARTIFACT_SCHEMA.into(),
            repo: Some("github.com/acme/web".into()),
            commit: None,
            scanned_at: None,
            committed_secrets: vec![],
            key_references: references,
            webhook_handlers: vec![],
        };
        let text = serde_json::to_string(&artifact).unwrap();
        let count = artifact.key_references.len() as i64;
        let lengths = ListLengths { key_references: count, ..ListLengths::default() };
        prop_assert_eq!(judge(text.len() as i64, lengths, Some(&text)), StoredArtifact::Present(artifact));
    }

    /// Any string: access or a reason, never a panic, and the reason never repeats the input.
    #[test]
    fn svix_url_parser_takes_any_string(raw in prop_oneof![
        ".{0,300}",
        ".{0,40}".prop_map(|s| format!("https://app.svix.com/login#key={s}")),
        marked_json().prop_map(|v| format!(
            "https://app.svix.com/login#key={}",
            base64::engine::general_purpose::STANDARD.encode(v.to_string())
        )),
    ]) {
        if let Err(error) = parse_svix_url(&raw) {
            let shown = format!("{error} {error:?}");
            prop_assert!(!shown.contains(MARK), "{}", shown);
        }
    }

    /// A URL made the way Svix makes them parses to its app, token and region, whatever the base64
    /// alphabet and padding.
    #[test]
    fn svix_urls_round_trip(
        app in "app_[a-zA-Z0-9]{1,30}",
        token in "appsk_[a-zA-Z0-9._-]{1,60}",
        region in proptest::option::of("[a-z]{2}"),
        url_safe in any::<bool>(),
        pad in any::<bool>(),
    ) {
        let key = json!({"appId": app, "token": token, "region": region}).to_string();
        let encoded = match (url_safe, pad) {
            (false, true) => base64::engine::general_purpose::STANDARD.encode(&key),
            (false, false) => base64::engine::general_purpose::STANDARD_NO_PAD.encode(&key),
            (true, true) => base64::engine::general_purpose::URL_SAFE.encode(&key),
            (true, false) => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key),
        };
        let encoded = encoded.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let access = parse_svix_url(&format!("https://app.svix.com/login#key={encoded}"));
        prop_assert!(access.is_ok(), "{:?}", access.err());
        let access = access.unwrap();
        prop_assert_eq!(access.app_id, app);
        prop_assert_eq!(access.token.expose_secret(), token.as_str());
        prop_assert_eq!(access.region, region);
    }

    /// Any bytes as a Clerk or Svix answer: decoded or a clean error, never a panic.
    #[test]
    fn response_decoders_take_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        decode_all(&body)?;
    }

    /// Any JSON as a Clerk or Svix answer, with the expected fields holding arbitrary values: decoded or an
    /// error naming a category and a field path, never a value of the body.
    #[test]
    fn response_decoder_errors_never_repeat_the_body(
        value in prop_oneof![
            marked_json(),
            shaped(&["id", "environment_type", "allowed_origins"]),
            shaped(&["total_count"]),
            shaped(&["data"]),
            shaped(&["auth_config", "user_settings"]),
            // The one map of the Clerk answers: its keys are data, and the body's values sit under them.
            marked_json().prop_map(|attributes| json!({"user_settings": {"attributes": {"LEAK0key": attributes}, "sign_in": {}}})),
            shaped(&["errors"]),
            shaped(&["data", "iterator", "done"]),
        ]
    ) {
        decode_all(value.to_string().as_bytes())?;
    }
}
