//! The repo artifact extractor (`clerk_audit::repo_scan`) against a corpus of small repositories, one
//! per framework and pattern of issue 3, plus generated trees for the walking rules.
//!
//! Each fixture under `tests/fixtures/repos/<name>/` has its expected artifact in
//! `tests/fixtures/repos/<name>.expected.json`, compared field by field and byte for byte; targeted
//! asserts below state what each fixture is about. `UPDATE_EXPECTED=1 cargo test --test repo_scan`
//! rewrites the expected files (review the diff before committing).

#[path = "repo_scan/support.rs"]
mod support;

use clerk_audit::artifact::{
    Confidence, KeyEnvironment, KeyKind, KeyReference, ReferenceContext, RepoArtifact, SecretSource, Verification,
    WebhookHandler,
};
use support::{check_expected, scan_fixture};

fn key<'a>(a: &'a RepoArtifact, file: &str, line: u32) -> &'a KeyReference {
    a.key_references
        .iter()
        .find(|k| k.file == file && k.line == line)
        .unwrap_or_else(|| panic!("no key reference at {file}:{line} in {:#?}", a.key_references))
}

fn handler<'a>(a: &'a RepoArtifact, file: &str) -> &'a WebhookHandler {
    a.webhook_handlers
        .iter()
        .find(|h| h.file == file)
        .unwrap_or_else(|| panic!("no handler in {file}: {:#?}", a.webhook_handlers))
}

fn env(name: &str) -> Option<SecretSource> {
    Some(SecretSource::EnvVar { env_var: name.into() })
}

fn events(h: &WebhookHandler) -> Vec<&str> {
    h.events.iter().map(String::as_str).collect()
}

/// Runs a fixture: expected file comparison first, then the fixture's own asserts.
fn fixture(name: &str) -> RepoArtifact {
    let a = scan_fixture(name);
    check_expected(name, &a);
    a
}

#[test]
fn nextjs_app_router() {
    let a = fixture("nextjs-app-router");
    let h = handler(&a, "src/app/(backend)/api/webhooks/clerk/route.ts");
    assert_eq!(h.framework, "nextjs-app-router");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"));
    assert_eq!(h.line, 8);
    assert_eq!(h.verification, Verification::ClerkVerifyWebhook);
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SIGNING_SECRET"));
    assert_eq!(events(h), ["user.created", "user.deleted", "user.updated"]);
    assert_eq!(a.webhook_handlers.len(), 1, "the GET health route is not a webhook handler");

    let pk = key(&a, ".env.production", 2);
    assert_eq!((pk.kind, pk.environment, pk.context), (KeyKind::Publishable, KeyEnvironment::Live, ReferenceContext::Production));
    assert_eq!(pk.variable.as_deref(), Some("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY"));
    assert_eq!(pk.frontend_api_host.as_deref(), Some("clerk.acme.example.com"));
    let sk = key(&a, ".env.production", 3);
    assert_eq!((sk.kind, sk.confidence), (KeyKind::Secret, Some(Confidence::High)));
    assert_eq!(key(&a, ".env.development", 1).context, ReferenceContext::Development);
}

#[test]
fn every_fixture_has_an_expected_artifact_and_matches_it() {
    let names = support::fixture_names();
    assert!(names.len() >= 22, "corpus shrank: {names:?}");
    for name in &names {
        let a = scan_fixture(name);
        check_expected(name, &a);
    }
    // No stale expected files.
    for entry in std::fs::read_dir(support::fixtures_root()).expect("fixtures").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".expected.json") {
            assert!(names.iter().any(|n| n == name), "{file} has no fixture folder");
        }
    }
}
