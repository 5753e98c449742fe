//! The repo artifact extractor (`clerk_repo_scan`) against a corpus of small repositories, one
//! per framework and webhook/key pattern, plus generated trees for the walking rules.
//!
//! Each fixture under `tests/fixtures/repos/<name>/` has its expected artifact in
//! `tests/fixtures/repos/<name>.expected.json`, compared field by field and byte for byte; targeted
//! asserts below state what each fixture is about. `UPDATE_EXPECTED=1 cargo test -p clerk-repo-scan --test corpus`
//! rewrites the expected files (review the diff before committing).

#[path = "corpus_support/support.rs"]
mod support;

use clerk_repo_scan::artifact::{
    CommittedSecretKind, Confidence, KeyEnvironment, KeyKind, KeyReference, ReferenceContext, RepoArtifact,
    SecretSource, SourceLocation, Verification, WebhookHandler,
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
    assert_eq!(
        (pk.kind, pk.environment, pk.context),
        (KeyKind::Publishable, KeyEnvironment::Live, ReferenceContext::Production)
    );
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

#[test]
fn nextjs_pages_router() {
    let a = fixture("nextjs-pages-router");
    let h = handler(&a, "pages/api/webhooks/clerk.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("nextjs-pages-router", Some("/api/webhooks/clerk")));
    assert_eq!(h.line, 10, "the function `export default handler` names");
    assert_eq!(h.verification, Verification::Svix);
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "through `const webhookSecret = process.env...`");
    assert_eq!(a.webhook_handlers.len(), 1, "pages/api/hello.ts is not a webhook handler");
    let v = key(&a, "vercel.json", 4);
    assert_eq!((v.environment, v.context), (KeyEnvironment::Test, ReferenceContext::Production));
    assert_eq!(key(&a, ".env.local", 1).context, ReferenceContext::Development);
}

#[test]
fn express_router_mounted_from_another_module() {
    let a = fixture("express");
    let h = handler(&a, "src/routes/webhooks.js");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("express", Some("/api/webhooks/clerk")));
    assert_eq!(h.verification, Verification::ClerkVerifyWebhook);
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "the signingSecret option wins over the default");
    assert_eq!(events(h), ["organization.created", "organizationMembership.created"]);
    let d = key(&a, "Dockerfile", 9);
    assert_eq!((d.variable.as_deref(), d.context), (Some("CLERK_PUBLISHABLE_KEY"), ReferenceContext::Production));
}

#[test]
fn fastify_route_object_under_register_prefix() {
    let a = fixture("fastify");
    let h = handler(&a, "src/webhooks.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("fastify", Some("/webhooks/clerk")));
    assert_eq!((h.verification, h.secret_source.clone()), (Verification::Svix, env("CLERK_WEBHOOK_SIGNING_SECRET")));
    assert_eq!(key(&a, "fly.toml", 5).context, ReferenceContext::Production);
}

#[test]
fn remix_and_react_router() {
    let a = fixture("remix");
    let h = handler(&a, "app/routes/api.webhooks.clerk.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref(), h.line), ("remix", Some("/api/webhooks/clerk"), 4));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"));
    let a = fixture("react-router");
    let h = handler(&a, "app/routes/webhooks.clerk.ts");
    assert_eq!(h.framework, "react-router");
    assert_eq!(h.route.as_deref(), Some("/api/clerk-webhook"), "app/routes.ts overrides the file name");
    assert_eq!(h.verification, Verification::ClerkVerifyWebhook);
}

#[test]
fn sveltekit_env_static_private_and_placeholders() {
    let a = fixture("sveltekit");
    let h = handler(&a, "src/routes/api/webhooks/clerk/+server.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("sveltekit", Some("/api/webhooks/clerk")));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "imported from $env/static/private");
    assert!(a.key_references.is_empty(), "pk_test_xxx... placeholders in .env.example are not keys");
}

#[test]
fn astro_with_netlify_contexts_and_a_malformed_key() {
    let a = fixture("astro");
    let h = handler(&a, "src/pages/api/webhooks/clerk.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("astro", Some("/api/webhooks/clerk")));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SIGNING_SECRET"));
    assert_eq!(key(&a, "netlify.toml", 6).context, ReferenceContext::Production);
    assert_eq!(key(&a, "netlify.toml", 10).context, ReferenceContext::Unknown, "deploy previews");
    let bad = key(&a, "netlify.toml", 13);
    assert!(bad.malformed, "a pk_live_ that does not decode is kept, marked malformed");
    assert_eq!(bad.frontend_api_host, None);
}

#[test]
fn nuxt_runtime_config() {
    let a = fixture("nuxt");
    let h = handler(&a, "server/api/webhooks/clerk.post.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("nuxt", Some("/api/webhooks/clerk")));
    assert_eq!(h.secret_source, env("NUXT_CLERK_WEBHOOK_SECRET"), "runtimeConfig.clerkWebhookSecret");
    assert_eq!(a.webhook_handlers.len(), 1, "profile.get.ts is not a webhook handler");
    let sk = key(&a, ".env.production", 2);
    assert_eq!((sk.variable.as_deref(), sk.confidence), (Some("NUXT_CLERK_SECRET_KEY"), Some(Confidence::High)));
}

#[test]
fn convex_http_action_with_verifying_helper() {
    let a = fixture("convex");
    assert_eq!(a.webhook_handlers.len(), 1, "validateRequest is a helper, not a second handler");
    let h = handler(&a, "convex/http.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref(), h.line), ("convex", Some("/clerk-users-webhook"), 9));
    assert_eq!(h.verification, Verification::Svix, "inherited from validateRequest()");
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"));
}

#[test]
fn hono_on_workers() {
    let a = fixture("hono");
    let h = handler(&a, "src/index.ts");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("hono", Some("/api/webhooks/clerk")));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SIGNING_SECRET"), "c.env.X");
    assert_eq!(key(&a, "wrangler.toml", 6).context, ReferenceContext::Production);
    assert_eq!(key(&a, "wrangler.toml", 9).context, ReferenceContext::Unknown, "[env.staging]");
}

#[test]
fn fastapi_router_prefixes_and_settings_module() {
    let a = fixture("fastapi");
    let h = handler(&a, "app/routers/webhooks.py");
    assert_eq!((h.framework.as_str(), h.route.as_deref(), h.line), ("fastapi", Some("/api/webhooks/clerk"), 10));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "imported from app/config.py");
    let k = key(&a, "deploy/k8s/deployment.yaml", 13);
    assert_eq!(k.variable.as_deref(), Some("CLERK_SECRET_KEY"), "from the `- name:` line above");
    assert_eq!(k.context, ReferenceContext::Production);
}

#[test]
fn flask_blueprint_with_standard_webhooks() {
    let a = fixture("flask");
    assert_eq!(a.webhook_handlers.len(), 1, "the GET status route is not a handler");
    let h = handler(&a, "app.py");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("flask", Some("/webhooks/clerk")));
    assert_eq!(h.verification, Verification::Standardwebhooks);
    assert_eq!(key(&a, ".github/workflows/deploy.yml", 10).context, ReferenceContext::Test);
    assert_eq!(key(&a, ".github/workflows/deploy.yml", 19).context, ReferenceContext::Production);
}

#[test]
fn django_view_routed_through_include() {
    let a = fixture("django");
    let h = handler(&a, "accounts/views.py");
    assert_eq!((h.framework.as_str(), h.route.as_deref(), h.line), ("django", Some("/webhooks/clerk/"), 12));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "settings.CLERK_WEBHOOK_SECRET read from settings.py");
    assert_eq!(a.webhook_handlers.len(), 1, "profile() is not a webhook handler");
}

#[test]
fn go_routers() {
    let a = fixture("go-net-http");
    let h = handler(&a, "webhook.go");
    assert_eq!((h.framework.as_str(), h.route.as_deref(), h.line), ("go-net-http", Some("/webhooks/clerk"), 17));
    assert_eq!((h.verification, h.secret_source.clone()), (Verification::Svix, env("CLERK_WEBHOOK_SECRET")));
    assert_eq!(key(&a, "config/production.env", 1).context, ReferenceContext::Production);

    let a = fixture("go-chi");
    let h = handler(&a, "internal/handlers/handlers.go");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("go-chi", Some("/webhooks/clerk")), "r.Route prefix");

    let a = fixture("go-gin");
    let h = handler(&a, "main.go");
    assert_eq!((h.framework.as_str(), h.route.as_deref()), ("go-gin", Some("/api/webhooks/clerk")), "Group prefix");
    assert_eq!(h.verification, Verification::Standardwebhooks);
    assert_eq!(events(h), ["session.ended"], "an event named only in a comment is not handled");
}

#[test]
fn negative_stripe_keys_without_clerk_are_not_clerk_keys() {
    let a = fixture("neg-stripe-only");
    assert!(a.key_references.is_empty(), "{:#?}", a.key_references);
    assert!(a.webhook_handlers.is_empty(), "a Stripe webhook is not a Clerk webhook");
}

#[test]
fn negative_keys_in_comments_are_examples() {
    let a = fixture("neg-commented-example");
    for k in &a.key_references {
        if k.file == ".env.example" || k.file == "README.md" {
            assert_eq!(k.context, ReferenceContext::Example, "{k:?}");
        }
    }
    // A commented-out development key in .env.production sets nothing in production.
    let old = key(&a, ".env.production", 2);
    assert_eq!((old.environment, old.context), (KeyEnvironment::Test, ReferenceContext::Example));
    assert!(
        !a.key_references
            .iter()
            .any(|k| k.environment == KeyEnvironment::Test && k.context == ReferenceContext::Production)
    );
    // Placeholders (`pk_test_xxx`, `sk_test_YOUR_SECRET_KEY`) are no references at all.
    assert!(!a.key_references.iter().any(|k| k.file == ".env.example" && k.line <= 3));
}

#[test]
fn negative_restringified_body_is_still_a_signature_check() {
    let a = fixture("neg-json-stringify");
    let h = handler(&a, "index.js");
    assert_eq!(h.verification, Verification::Svix, "JSON.stringify(req.body) is verified, just fragile");
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"));
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"));
    assert!(h.reserialized_body, "the fragility is a fact of its own");
    assert!(!h.acks_failed_verification, "the catch answers 400");
}

#[test]
fn negative_handler_without_verification() {
    let a = fixture("neg-no-verification");
    let h = handler(&a, "app/api/webhooks/clerk/route.ts");
    assert_eq!(h.verification, Verification::None, "commented-out verification does not count");
    assert_eq!(h.secret_source, None);
    assert_eq!(events(h), ["user.created", "user.deleted"]);
}

#[test]
fn negative_hardcoded_whsec_is_fingerprinted() {
    let a = fixture("neg-hardcoded-whsec");
    let secret = "whsec_Zml4dHVyZS1vbmx5LW5vdC1yZWFsLXNlY3JldA==";
    let fp = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes())));
    let want = Some(SecretSource::LiteralFingerprint { literal_fingerprint: fp });
    assert_eq!(handler(&a, "app/api/webhooks/clerk/route.ts").secret_source, want, "through a module constant");
    assert_eq!(handler(&a, "worker/hooks.py").secret_source, want, "written in the call");
    assert!(!clerk_repo_scan::to_json(&a).contains("whsec_"));
}

#[test]
fn monorepo_projects_scope_the_evidence() {
    let a = fixture("monorepo-two-apps");
    let h = handler(&a, "apps/web/src/app/api/webhooks/clerk/route.ts");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "relative to apps/web");
    assert_eq!(h.secret_source, env("WEB_CLERK_WEBHOOK_SECRET"));
    // The worker app has no Clerk in sight; Clerk is elsewhere in the repo: low confidence.
    let k = key(&a, "apps/worker/.env.production", 1);
    assert_eq!((k.kind, k.confidence), (KeyKind::Secret, Some(Confidence::Low)));
    let c = key(&a, "docker-compose.prod.yml", 6);
    assert_eq!((c.context, c.confidence), (ReferenceContext::Production, Some(Confidence::High)));
}

#[test]
fn artifacts_never_hold_raw_secrets_and_follow_the_schema() {
    for name in support::fixture_names() {
        let a = scan_fixture(&name);
        let json = clerk_repo_scan::to_json(&a);
        for token in support::raw_tokens(&support::fixtures_root().join(&name)) {
            assert!(!json.contains(&token), "{name}: raw {token} in the artifact");
            // Not even the payload of a publishable key.
            let payload = token.splitn(3, '_').nth(2).unwrap_or("");
            assert!(payload.len() < 8 || !json.contains(payload), "{name}: payload of {token} in the artifact");
        }
        assert!(!json.contains("sk_live_") && !json.contains("sk_test_") && !json.contains("whsec_"), "{name}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        let parsed = RepoArtifact::from_json(value).expect("clerk-repo-artifact/v1");
        assert_eq!(parsed, a, "{name}: round trip");
        for k in &a.key_references {
            match k.kind {
                KeyKind::Secret => {
                    let fp = k.fingerprint.as_deref().unwrap_or("");
                    assert!(fp.len() == 71 && fp.starts_with("sha256:"), "{name}: {fp}");
                    assert!(fp[7..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                    assert!(k.confidence.is_some() && k.frontend_api_host.is_none());
                }
                KeyKind::Publishable => {
                    assert!(k.fingerprint.is_none() && k.confidence.is_none());
                    assert!(k.malformed != k.frontend_api_host.is_some(), "{name}: {k:?}");
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Generated trees: the walking rules (trees git could not hold as fixtures, or too big to commit).

use clerk_repo_scan::{RepoScanError, ScanOptions, scan, scan_with_stats, to_json};
use support::TempDir;

const PK_TEST: &str = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k";
const SK_LIVE: &str = "sk_live_fixtureOnlyZ9y8X7w6V5u4T3s2R1q0P9o8N7m6";

fn files_with_keys(a: &RepoArtifact) -> Vec<&str> {
    let mut files: Vec<&str> = a.key_references.iter().map(|k| k.file.as_str()).collect();
    files.dedup();
    files
}

#[test]
fn respects_gitignore_and_skips_dependency_and_build_folders() {
    let t = TempDir::new("ignore");
    t.write("package.json", r#"{"dependencies":{"@clerk/nextjs":"6"}}"#);
    t.write(".gitignore", "secrets/\n.env.local\n*.bak\n");
    t.write(".env.local", format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    t.write("secrets/prod.env", format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    t.write("old.env.bak", format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    t.write("apps/web/.gitignore", "generated/\n");
    t.write("apps/web/generated/keys.ts", format!("export const k = '{PK_TEST}'\n"));
    for dir in [
        "node_modules/@clerk/shared",
        "vendor/clerk",
        "build",
        "dist",
        ".next/server",
        "apps/web/node_modules/x",
        ".venv/lib",
        "target/debug",
    ] {
        t.write(&format!("{dir}/keys.js"), format!("const CLERK_PUBLISHABLE_KEY = '{PK_TEST}'\n"));
    }
    t.write("venv2/pyvenv.cfg", "home = /usr/bin\n");
    t.write("venv2/lib/keys.py", format!("CLERK_PUBLISHABLE_KEY = '{PK_TEST}'\n"));
    t.write("src/app.ts", format!("const CLERK_PUBLISHABLE_KEY = '{PK_TEST}'\n"));
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(files_with_keys(&a), ["src/app.ts"]);

    // Without .gitignore handling the ignored files are read (the folders are still skipped).
    let opts = ScanOptions { respect_gitignore: false, ..support::options() };
    let a = scan(t.path(), &opts).expect("scan");
    assert_eq!(
        files_with_keys(&a),
        [".env.local", "apps/web/generated/keys.ts", "old.env.bak", "secrets/prod.env", "src/app.ts"]
    );
}

#[cfg(unix)]
#[test]
fn follows_no_symlink_out_of_the_tree() {
    let outside = TempDir::new("outside");
    outside.write("leak/.env.production", format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    let t = TempDir::new("symlinks");
    t.write("src/ok.ts", format!("const CLERK_PUBLISHABLE_KEY = '{PK_TEST}'\n"));
    std::os::unix::fs::symlink(outside.path().join("leak"), t.path().join("linked-dir")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("leak/.env.production"), t.path().join(".env.production"))
        .expect("symlink");
    // A loop must not hang the walk either.
    std::os::unix::fs::symlink(t.path(), t.path().join("src/loop")).expect("symlink");
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(files_with_keys(&a), ["src/ok.ts"]);
}

#[test]
fn skips_binary_and_oversized_files_and_reads_invalid_utf8() {
    let t = TempDir::new("binary");
    t.write("package.json", r#"{"dependencies":{"@clerk/backend":"2"}}"#);
    let mut bin = b"\x00\x01\x02ELF".to_vec();
    bin.extend_from_slice(format!("CLERK_SECRET_KEY={SK_LIVE}").as_bytes());
    t.write("tool.bin.dat", &bin);
    t.write("logo.png", format!("CLERK_SECRET_KEY={SK_LIVE}"));
    let mut big = format!("CLERK_SECRET_KEY={SK_LIVE}\n").into_bytes();
    big.resize(5000, b'a');
    t.write("big.env", &big);
    let mut latin1 = b"# caf\xe9 \xff\xfe\n".to_vec();
    latin1.extend_from_slice(format!("CLERK_SECRET_KEY={SK_LIVE}\n").as_bytes());
    latin1.extend_from_slice(b"\xc3(\n");
    t.write("legacy.env", &latin1);
    let opts = ScanOptions { max_file_size: 4096, ..support::options() };
    let (a, stats) = scan_with_stats(t.path(), &opts).expect("scan");
    assert_eq!(files_with_keys(&a), ["legacy.env"]);
    assert_eq!(key(&a, "legacy.env", 2).variable.as_deref(), Some("CLERK_SECRET_KEY"));
    assert_eq!(stats.skipped_too_large, 1);
    assert_eq!(stats.skipped_binary, 2);
}

#[test]
fn survives_huge_minified_lines_and_hostile_input() {
    let t = TempDir::new("minified");
    t.write("package.json", r#"{"dependencies":{"@clerk/clerk-js":"5"}}"#);
    // ~900 KB on one line, with keys, brackets and quotes in odd places.
    let mut line = String::new();
    while line.len() < 900_000 {
        line.push_str("var a=function(){return'(['+\"{\"+`${x}`};");
        line.push_str(&format!("window.CLERK_PUBLISHABLE_KEY=\"{PK_TEST}\";"));
        line.push_str("sk_test_/* pk_live_ whsec_ */(((((");
    }
    t.write("public/app.min.js", &line);
    t.write("src/weird.ts", "export async function POST(\napp.post('/x', (req, res) => { `${`${\n");
    t.write(
        "app/api/webhooks/clerk/route.ts",
        "export async function POST(req) { const e = req.json(); 'user.created' ",
    );
    // Deeply chained expressions and nested router calls in a webhook module.
    let chain = format!("const SECRET = {}process.env.CLERK_WEBHOOK_SECRET;\n", "a || ".repeat(50_000));
    let nested = format!("{}0{}", "app.use(".repeat(5_000), ")".repeat(5_000));
    t.write(
        "src/webhooks/chain.ts",
        format!("import {{ Webhook }} from 'svix'\n{chain}{nested}\nnew Webhook(SECRET).verify(b, h)\n"),
    );
    t.write("src/unterminated.py", "def f(request):\n    '''\n@app.post(\"/x\")\n");
    t.write(
        "src/odd.go",
        "package x\nfunc (\nhttp.HandleFunc(\"/clerk\", func(w http.ResponseWriter, r *http.Request) {",
    );
    let a = scan(t.path(), &support::options()).expect("scan");
    let min: Vec<_> = a.key_references.iter().filter(|k| k.file == "public/app.min.js").collect();
    assert!(!min.is_empty() && min.len() <= 500, "capped per file: {}", min.len());
    assert!(min.iter().all(|k| k.line == 1));
    // The half-written route is still recognised as a (non-verifying) Clerk handler.
    let h = handler(&a, "app/api/webhooks/clerk/route.ts");
    assert_eq!(h.verification, Verification::None);
}

#[test]
fn survives_deep_trees() {
    let t = TempDir::new("deep");
    t.write("package.json", r#"{"dependencies":{"@clerk/nextjs":"6"}}"#);
    let mut shallow = String::new();
    for _ in 0..40 {
        shallow.push_str("d/");
    }
    t.write(&format!("{shallow}.env.production"), format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    let mut deep = String::new();
    for _ in 0..300 {
        deep.push_str("e/");
    }
    t.write(&format!("{deep}.env.production"), format!("CLERK_SECRET_KEY={SK_LIVE}\n"));
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(a.key_references.len(), 1, "depth 40 is read, depth 300 is beyond max_depth");
    assert!(a.key_references[0].file.starts_with("d/d/"));
}

#[test]
fn same_tree_same_bytes() {
    let one = TempDir::new("det-a");
    let two = TempDir::new("det-b");
    for name in ["monorepo-two-apps", "nextjs-app-router", "django"] {
        support::copy_tree(&support::fixtures_root().join(name), &one.path().join(name));
        support::copy_tree(&support::fixtures_root().join(name), &two.path().join("elsewhere").join(name));
    }
    let first = to_json(&scan(one.path(), &support::options()).expect("scan"));
    for threads in [1, 2, 4] {
        let opts = ScanOptions { threads, ..support::options() };
        assert_eq!(to_json(&scan(one.path(), &opts).expect("scan")), first, "threads={threads}");
    }
    let moved = to_json(&scan(&two.path().join("elsewhere"), &support::options()).expect("scan"));
    assert_eq!(moved, first, "the location of the tree does not matter");
    // Sorted by file then line.
    let a = scan(one.path(), &support::options()).expect("scan");
    let order: Vec<(&str, u32)> = a.key_references.iter().map(|k| (k.file.as_str(), k.line)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert!(
        a.key_references.iter().any(|k| k.file.starts_with("django/"))
            || a.webhook_handlers.iter().any(|h| h.file.starts_with("django/"))
    );
}

#[test]
fn repo_and_commit_from_git_files() {
    let t = TempDir::new("git");
    let sha = "3f2a9c0d1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a69";
    t.write(".git/HEAD", "ref: refs/heads/main\n");
    t.write(".git/refs/heads/main", format!("{sha}\n"));
    t.write(".git/config", "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://x-access-token:ghs_notreal@github.com/Acme/web.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n");
    t.write(".git/objects/ab/cdef", format!("CLERK_SECRET_KEY={SK_LIVE}"));
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(a.repo.as_deref(), Some("github.com/Acme/web"));
    assert_eq!(a.commit.as_deref(), Some(sha));
    assert_eq!(a.scanned_at.as_deref(), Some(support::SCANNED_AT));
    assert!(a.key_references.is_empty(), ".git is never scanned");
    assert!(!to_json(&a).contains("ghs_notreal"), "credentials in the remote URL are dropped");

    // Packed refs, and options override what .git says.
    std::fs::remove_file(t.path().join(".git/refs/heads/main")).expect("rm");
    t.write(".git/packed-refs", format!("# pack-refs with: peeled fully-peeled sorted\n{sha} refs/heads/main\n"));
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(a.commit.as_deref(), Some(sha));
    let opts = ScanOptions { repo: Some("gitlab.com/acme/x".into()), commit: Some("abc".into()), ..support::options() };
    let a = scan(t.path(), &opts).expect("scan");
    assert_eq!((a.repo.as_deref(), a.commit.as_deref()), (Some("gitlab.com/acme/x"), Some("abc")));

    // A worktree: `.git` is a file pointing at the real git dir, whose `commondir` holds refs and config.
    let main = TempDir::new("git-main");
    main.write(".git/config", "[remote \"origin\"]\n\turl = git@github.com:acme/api.git\n");
    main.write(".git/refs/heads/feature", format!("{sha}\n"));
    main.write(".git/worktrees/wt/HEAD", "ref: refs/heads/feature\n");
    main.write(".git/worktrees/wt/commondir", "../..\n");
    let wt = TempDir::new("git-wt");
    wt.write(".git", format!("gitdir: {}\n", main.path().join(".git/worktrees/wt").display()));
    let a = scan(wt.path(), &support::options()).expect("scan");
    assert_eq!((a.repo.as_deref(), a.commit.as_deref()), (Some("github.com/acme/api"), Some(sha)));

    // No .git: both null.
    let bare = TempDir::new("nogit");
    bare.write("README.md", "hello");
    let a = scan(bare.path(), &support::options()).expect("scan");
    assert_eq!((a.repo, a.commit), (None, None));
}

#[test]
fn errors_for_a_missing_or_non_directory_root() {
    let t = TempDir::new("errors");
    let file = t.write("file.txt", "x");
    assert!(matches!(scan(&t.path().join("missing"), &ScanOptions::default()), Err(RepoScanError::Root { .. })));
    assert!(matches!(scan(&file, &ScanOptions::default()), Err(RepoScanError::NotADirectory(_))));
}

#[test]
fn empty_tree_gives_an_empty_artifact() {
    let t = TempDir::new("empty");
    let a = scan(t.path(), &ScanOptions::default()).expect("scan");
    assert_eq!(a.schema, "clerk-repo-artifact/v1");
    assert!(a.key_references.is_empty() && a.webhook_handlers.is_empty());
    assert_eq!(a.scanned_at, None);
    let json: serde_json::Value = serde_json::from_str(&to_json(&a)).expect("json");
    assert_eq!(json["repo"], serde_json::Value::Null);
}

#[test]
fn helpers_and_event_processors_in_other_modules() {
    let t = TempDir::new("helpers");
    t.write("package.json", r#"{"dependencies":{"@clerk/nextjs":"6","next":"15","svix":"1"}}"#);
    t.write(
        "src/lib/verify.ts",
        "import { Webhook } from 'svix'\nimport type { WebhookEvent } from '@clerk/nextjs/server'\n\nexport async function verifyClerkWebhook(req: Request): Promise<WebhookEvent> {\n  const wh = new Webhook(process.env.CLERK_WEBHOOK_SECRET!)\n  return wh.verify(await req.text(), Object.fromEntries(req.headers)) as WebhookEvent\n}\n",
    );
    t.write(
        "src/lib/events.ts",
        "import type { WebhookEvent } from '@clerk/nextjs/server'\n\nexport async function handleClerkEvent(req: WebhookEvent) {\n  if (req.type === 'user.created') {}\n  if (req.type === 'organization.deleted') {}\n}\n",
    );
    t.write(
        "src/app/api/webhooks/clerk/route.ts",
        "import { verifyClerkWebhook } from '@/lib/verify'\nimport { handleClerkEvent } from '@/lib/events'\n\nexport async function POST(req: Request) {\n  const evt = await verifyClerkWebhook(req)\n  await handleClerkEvent(evt)\n  return new Response('ok')\n}\n",
    );
    let a = scan(t.path(), &support::options()).expect("scan");
    assert_eq!(a.webhook_handlers.len(), 1, "helpers are not handlers: {:#?}", a.webhook_handlers);
    let h = handler(&a, "src/app/api/webhooks/clerk/route.ts");
    assert_eq!(h.verification, Verification::Svix, "from verifyClerkWebhook()");
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"));
    assert_eq!(events(h), ["organization.deleted", "user.created"], "from handleClerkEvent()");
}

#[test]
fn unrouted_handlers_are_reported_without_a_route() {
    let t = TempDir::new("orphan");
    t.write("requirements.txt", "django\nsvix\n");
    t.write(
        "hooks/views.py",
        "from django.conf import settings\nfrom svix.webhooks import Webhook\n\n\ndef clerk_webhook(request):\n    wh = Webhook(settings.CLERK_WEBHOOK_SECRET)\n    evt = wh.verify(request.body, request.headers)\n    return evt\n",
    );
    let a = scan(t.path(), &support::options()).expect("scan");
    let h = handler(&a, "hooks/views.py");
    assert_eq!((h.route.as_deref(), h.framework.as_str(), h.line), (None, "django", 5));
    assert_eq!(h.verification, Verification::Svix);
    // Verified, but the secret is assigned nowhere in the project: said, not guessed.
    assert_eq!(h.secret_source, Some(SecretSource::Unresolved { unresolved: "CLERK_WEBHOOK_SECRET".into() }));
}

#[test]
fn well_known_variable_names_and_keys_passed_straight_to_calls() {
    let names = [
        "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
        "VITE_CLERK_PUBLISHABLE_KEY",
        "PUBLIC_CLERK_PUBLISHABLE_KEY",
        "NUXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
        "EXPO_PUBLIC_CLERK_PUBLISHABLE_KEY",
        "REACT_APP_CLERK_PUBLISHABLE_KEY",
        "CLERK_PUBLISHABLE_KEY",
    ];
    let t = TempDir::new("names");
    let mut env = String::new();
    for n in names {
        env.push_str(&format!("{n}={PK_TEST}\n"));
    }
    env.push_str(&format!("CLERK_SECRET_KEY={SK_LIVE}\nNUXT_CLERK_SECRET_KEY={SK_LIVE}\n"));
    t.write(".env.sample", &env);
    // The spec's example: a key handed straight to a Clerk call in a script.
    t.write(
        "scripts/seed.ts",
        format!("import {{ createClerkClient }} from '@clerk/backend'\n\nconst clerk = createClerkClient({{\n  secretKey:\n    '{SK_LIVE}',\n}})\n"),
    );
    t.write("cmd/seed/main.go", format!("package main\n\nimport \"github.com/clerk/clerk-sdk-go/v2\"\n\nfunc main() {{\n\tclerk.SetKey(\"{SK_LIVE}\")\n}}\n"));
    let a = scan(t.path(), &support::options()).expect("scan");
    for (i, n) in names.iter().enumerate() {
        let k = key(&a, ".env.sample", i as u32 + 1);
        assert_eq!(
            (k.variable.as_deref(), k.context, k.kind),
            (Some(*n), ReferenceContext::Example, KeyKind::Publishable)
        );
    }
    for line in [8, 9] {
        assert_eq!(key(&a, ".env.sample", line).confidence, Some(Confidence::High));
    }
    let seed = key(&a, "scripts/seed.ts", 5);
    assert_eq!((seed.variable.as_deref(), seed.context), (None, ReferenceContext::Unknown));
    assert_eq!(seed.confidence, Some(Confidence::High), "createClerkClient two lines up");
    let go = key(&a, "cmd/seed/main.go", 6);
    assert_eq!((go.variable.as_deref(), go.confidence), (None, Some(Confidence::High)));
    assert_eq!(go.fingerprint, seed.fingerprint, "same key, same fingerprint");
}

fn at(file: &str, line: u32) -> Option<SourceLocation> {
    Some(SourceLocation { file: file.into(), line })
}

fn sha256(value: &str) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(value.as_bytes())))
}

#[test]
fn express_handler_imported_into_a_mounted_router() {
    let a = fixture("express-cross-file");
    assert_eq!(a.webhook_handlers.len(), 1, "the health route is not a handler: {:#?}", a.webhook_handlers);
    let h = handler(&a, "src/controllers/webhooks.js");
    assert_eq!(h.line, 3, "the function, not the router call");
    assert_eq!(h.registration, at("src/routes/index.js", 7), "registered in another file");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "`app.use('/api', router)` in server.js");
    assert_eq!((h.framework.as_str(), h.verification), ("express", Verification::Svix));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"));
    assert!(h.reserialized_body, "verifies JSON.stringify(req.body) after the global express.json()");
    assert!(!h.acks_failed_verification);
    // The committed `.env` holds the signing secret: fingerprint and variable only.
    let c = &a.committed_secrets;
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!((c[0].file.as_str(), c[0].line, c[0].variable.as_str()), (".env", 2, "CLERK_WEBHOOK_SECRET"));
    assert_eq!(c[0].kind, CommittedSecretKind::WebhookSecret);
    assert_eq!(c[0].fingerprint, sha256("whsec_Zml4dHVyZU9ubHlOb3RBUmVhbFNlY3JldDEyMzQ1Ng=="));
    assert!(!clerk_repo_scan::to_json(&a).contains("whsec_"));
}

#[test]
fn fastapi_include_router_and_pydantic_settings() {
    let a = fixture("fastapi-settings");
    let h = handler(&a, "app/api/webhooks.py");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "`include_router(prefix=)` in main.py");
    assert_eq!((h.line, h.registration.clone()), (10, at("app/api/webhooks.py", 9)));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "a `BaseSettings` field read by name");
    assert!(h.acks_failed_verification, "`except`: return Response(status_code=200)");
    assert!(!h.reserialized_body, "verifies `await request.body()`");
    let c = &a.committed_secrets;
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!((c[0].variable.as_str(), c[0].kind), ("CLERK_SECRET_KEY", CommittedSecretKind::LiveSecretKey));
}

#[test]
fn go_groups_nested_across_packages_with_a_struct_handler_and_a_config_loader() {
    let a = fixture("go-nested-groups");
    assert_eq!(a.webhook_handlers.len(), 1, "{:#?}", a.webhook_handlers);
    let h = handler(&a, "internal/handlers/webhooks.go");
    assert_eq!(h.line, 24, "the method on the struct");
    assert_eq!(h.registration, at("internal/routes/routes.go", 10));
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "`r.Group(\"/api\")` passed from main.go");
    assert_eq!((h.framework.as_str(), h.verification), ("go-gin", Verification::Svix));
    assert_eq!(
        h.secret_source,
        env("CLERK_WEBHOOK_SECRET"),
        "NewWebhookHandler(secret) <- cfg.ClerkWebhookSecret <- mustGet(\"CLERK_WEBHOOK_SECRET\")"
    );
    assert!(!h.acks_failed_verification, "AbortWithStatus(http.StatusUnauthorized)");
}

#[test]
fn nestjs_controller_with_a_global_prefix() {
    let a = fixture("nestjs");
    let h = handler(&a, "src/webhooks/webhooks.controller.ts");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "setGlobalPrefix + @Controller + @Post");
    assert_eq!((h.line, h.registration.clone()), (13, at("src/webhooks/webhooks.controller.ts", 11)));
    assert_eq!((h.framework.as_str(), h.verification), ("nestjs", Verification::Svix));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "ConfigService.getOrThrow('CLERK_WEBHOOK_SECRET')");
    assert!(h.acks_failed_verification, "the catch returns an object: Nest answers 2xx");
    assert_eq!(events(h), ["organization.created"]);
}

#[test]
fn hono_sub_app_mounted_with_route() {
    let a = fixture("hono-cross-file");
    let h = handler(&a, "src/routes/webhooks.ts");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "`app.route('/api/webhooks', webhooks)`");
    assert_eq!(h.registration, at("src/routes/webhooks.ts", 9));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "c.env binding");
    assert!(h.acks_failed_verification, "catch: c.json({{ received: true }}, 200)");
}

#[test]
fn flask_blueprint_registered_with_url_prefix_elsewhere() {
    let a = fixture("flask-blueprint-prefix");
    let h = handler(&a, "app/webhooks.py");
    assert_eq!(h.route.as_deref(), Some("/api/webhooks/clerk"), "register_blueprint(url_prefix=) in __init__.py");
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "a settings module constant");
    assert!(h.reserialized_body, "json.dumps(request.get_json())");
    assert!(!h.acks_failed_verification, "`return \"\", 400`");
}

#[test]
fn echo_groups_nested_across_packages_acking_a_failed_verification() {
    let a = fixture("go-echo");
    assert_eq!(a.webhook_handlers.len(), 1, "{:#?}", a.webhook_handlers);
    let h = handler(&a, "internal/webhooks/handler.go");
    assert_eq!(h.line, 21, "the method on the struct");
    assert_eq!(h.registration, at("internal/server/server.go", 10));
    assert_eq!(h.route.as_deref(), Some("/v1/incoming/clerk"), "`e.Group(\"/v1\")` passed from cmd/api/main.go");
    assert_eq!((h.framework.as_str(), h.verification), ("go-echo", Verification::Svix));
    assert_eq!(h.secret_source, env("CLERK_SIGNING_SECRET"), "New(secret) <- cfg.SigningSecret <- os.Getenv");
    assert!(h.acks_failed_verification, "`return c.NoContent(http.StatusOK)` when Verify fails");
}

#[test]
fn chi_router_mounted_from_another_package_with_a_secret_that_cannot_be_followed() {
    let a = fixture("go-chi-mount");
    assert_eq!(a.webhook_handlers.len(), 1, "{:#?}", a.webhook_handlers);
    let h = handler(&a, "internal/clerkhooks/routes.go");
    assert_eq!(
        h.route.as_deref(),
        Some("/hooks/clerk"),
        "`r.Mount(\"/hooks\", clerkhooks.Routes(...))` + `r.Route(\"/clerk\")`"
    );
    assert_eq!((h.framework.as_str(), h.verification), ("go-chi", Verification::Svix));
    assert_eq!(h.registration, at("internal/clerkhooks/routes.go", 16));
    assert_eq!(
        h.secret_source,
        Some(SecretSource::Unresolved { unresolved: "secret".into() }),
        "the caller passes vault.MustRead(...): a function's return value is not guessed"
    );
    assert!(!h.acks_failed_verification, "http.Error(..., http.StatusUnauthorized)");
}

#[test]
fn a_registration_follows_its_import_past_a_namesake() {
    let a = fixture("express-namesakes");
    assert_eq!(
        a.webhook_handlers.len(),
        1,
        "the Stripe `handleWebhook` is no Clerk handler: {:#?}",
        a.webhook_handlers
    );
    let h = handler(&a, "src/webhooks/clerk.js");
    assert_eq!(
        h.route.as_deref(),
        Some("/api/webhooks/clerk"),
        "`import {{ handleWebhook }} from './webhooks/clerk.js'` names this file, not src/payments/stripe.js"
    );
    assert_eq!(h.registration, at("src/app.js", 6));
    assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SIGNING_SECRET"));
    assert!(!h.reserialized_body && !h.acks_failed_verification, "express.raw and a 400 on failure");
}

/// A Go service whose verifier constructor is reached through `wrappers` functions that each hand the
/// secret on to the next, the outermost called with `os.Getenv("CLERK_WEBHOOK_SECRET")`.
fn secret_through_wrappers(wrappers: usize) -> RepoArtifact {
    let t = TempDir::new(&format!("hops-{wrappers}"));
    t.write("go.mod", "module github.com/acme/hops\n\ngo 1.22\n\nrequire github.com/svix/svix-webhooks v1.38.0\n");
    t.write(
        "internal/hooks/hooks.go",
        concat!(
            "package hooks\n\nimport (\n\t\"io\"\n\t\"net/http\"\n\n\tsvix \"github.com/svix/svix-webhooks/go\"\n)\n\n",
            "type Handler struct{ wh *svix.Webhook }\n\n",
            "func NewHandler(secret string) *Handler {\n\twh, _ := svix.NewWebhook(secret)\n\treturn &Handler{wh: wh}\n}\n\n",
            "// Serve receives Clerk webhooks.\n",
            "func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) {\n",
            "\tbody, _ := io.ReadAll(r.Body)\n",
            "\tif err := h.wh.Verify(body, r.Header); err != nil {\n\t\tw.WriteHeader(http.StatusBadRequest)\n\t\treturn\n\t}\n",
            "\tw.WriteHeader(http.StatusNoContent)\n}\n",
        ),
    );
    let mut wiring = String::from(
        "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n\n\t\"github.com/acme/hops/internal/hooks\"\n)\n\n",
    );
    let mut inner = "hooks.NewHandler".to_owned();
    for i in 1..=wrappers {
        wiring.push_str(&format!("func wrap{i}(s string) *hooks.Handler {{\n\treturn {inner}(s)\n}}\n\n"));
        inner = format!("wrap{i}");
    }
    wiring.push_str(&format!(
        "func main() {{\n\th := {inner}(os.Getenv(\"CLERK_WEBHOOK_SECRET\"))\n\thttp.HandleFunc(\"/webhooks/clerk\", h.Serve)\n\t_ = http.ListenAndServe(\":8080\", nil)\n}}\n"
    ));
    t.write("cmd/hops/main.go", wiring);
    scan(t.path(), &support::options()).expect("scan")
}

#[test]
fn a_secret_is_followed_through_constructor_wrappers_up_to_the_bound_then_unresolved() {
    for wrappers in 0..=2 {
        let a = secret_through_wrappers(wrappers);
        let h = handler(&a, "internal/hooks/hooks.go");
        assert_eq!(h.route.as_deref(), Some("/webhooks/clerk"));
        assert_eq!(h.secret_source, env("CLERK_WEBHOOK_SECRET"), "{wrappers} wrappers");
    }
    for wrappers in [3, 6] {
        let a = secret_through_wrappers(wrappers);
        let h = handler(&a, "internal/hooks/hooks.go");
        assert!(
            matches!(h.secret_source, Some(SecretSource::Unresolved { .. })),
            "{wrappers} wrappers: beyond the bound, said rather than guessed: {:?}",
            h.secret_source
        );
    }
}
