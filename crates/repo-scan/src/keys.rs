//! Clerk key references: `pk_live_`, `pk_test_`, `sk_live_`, `sk_test_` tokens in any text file.
//!
//! - **Placeholders are not keys.** A token whose payload is shorter than 8 characters (16 for secret
//!   keys), holds a run of 6 identical characters (`xxxxxx`, `******` never matches the token at all),
//!   or a placeholder word (`your`, `placeholder`, `replace`, `changeme`, `example`, `dummy`, `redacted`,
//!   `secret`, `fake`-looking runs like `12345678`) is skipped, unless (for publishable keys) it decodes.
//! - **Publishable keys** are `pk_<env>_` + base64 of the Frontend API host followed by `$`. A key that
//!   decodes to a valid host is Clerk's by construction. One that does not decode is recorded with
//!   `malformed: true` when it is Clerk's by the evidence rule below (high or medium), and dropped
//!   otherwise (Stripe and Paystack publishable keys share the prefix and never decode). The raw key is
//!   never written, only the decoded host.
//! - **Secret keys** are written only as `sha256:<lowercase hex of SHA-256 of the exact key string>`.
//! - **Evidence rule** (Stripe, Paystack, Culqi... also use `sk_live_`/`sk_test_`): in this order,
//!   1. the variable it is assigned to names Clerk (`CLERK_SECRET_KEY`): `high`;
//!   2. the variable names another vendor (`STRIPE_SECRET_KEY`): not Clerk's, dropped;
//!   3. the line names Clerk (`createClerkClient({ secretKey: "sk_..." })`): `high`;
//!   4. the line names another vendor (`new Stripe("sk_...")`): dropped;
//!   5. a line within two lines names Clerk: `high`, or `medium` when one also names another vendor;
//!   6. a line within two lines names another vendor: dropped;
//!   7. the same file or the same project holds Clerk evidence (a `CLERK_` variable name, an `@clerk/*`,
//!      `clerk-backend-api` or `clerk-sdk-go` import or dependency, or a publishable key that decodes):
//!      `medium`. A project is the folder of the nearest manifest (`package.json`, `go.mod`,
//!      `pyproject.toml`, `requirements.txt`, ...) with everything below it;
//!   8. Clerk evidence elsewhere in the repository only (another app of a monorepo): `low`;
//!   9. no Clerk evidence anywhere: dropped.
//! - **Comments.** A key written only in a comment (`# NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY=pk_live_...`)
//!   is still recorded (it is written in the repo, and a secret in a comment is as leaked as any other),
//!   but with context `example`: a comment sets nothing, it illustrates.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::artifact::{KeyEnvironment, KeyKind};

use super::text::{LazyLines, LineIndex, head, tail};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

static KEY: LazyLock<Regex> = LazyLock::new(|| re(r"\b([ps])k_(live|test)_([A-Za-z0-9+/=]*)"));
static CLERK_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)clerk"));
/// Other vendors whose keys share the `pk_`/`sk_` prefixes.
pub(crate) static VENDOR_WORD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)stripe|paystack|culqi|omise|conekta|flutterwave|razorpay"));
static DOCKER_VAR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*(?:ENV|ARG)\s+([A-Za-z_][A-Za-z0-9_]*)\s*[= ]\s*[\x22']?\s*$"));
static ASSIGNED_VAR: LazyLock<Regex> =
    LazyLock::new(|| re(r#"([A-Za-z_$][\w$.\-]*)["'`]?\]?\s*(?::=|\?\?=|\|\|=|=>|=|:|\?\?|\|\||,)\s*["'`]?\s*$"#));
static YAML_NAME: LazyLock<Regex> = LazyLock::new(|| re(r#"^\s*-?\s*name:\s*["']?([A-Za-z_][\w.\-]*)["']?\s*$"#));

/// The standard base64 alphabet, padding optional (Clerk keys are written both ways).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// At most this many key references are taken from one file.
const MAX_KEYS_PER_FILE: usize = 500;

/// One key token found in a file, before the evidence rule is applied.
#[derive(Debug, Clone)]
pub(crate) struct KeyHit {
    pub kind: KeyKind,
    pub environment: KeyEnvironment,
    pub line: u32,
    pub variable: Option<String>,
    pub commented: bool,
    /// Publishable: the decoded host.
    pub host: Option<String>,
    /// Secret: `sha256:<hex>`.
    pub fingerprint: Option<String>,
    pub var_clerk: bool,
    pub var_vendor: bool,
    pub line_clerk: bool,
    pub line_vendor: bool,
    pub near_clerk: bool,
    pub near_vendor: bool,
}

/// `sha256:<lowercase hex>` of a string.
pub(crate) fn fingerprint(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// Decodes a publishable key's payload to its Frontend API host (`base64(host + "$")`).
pub(crate) fn decode_publishable(payload: &str) -> Option<String> {
    let bytes = B64.decode(payload.trim_end_matches('=')).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let host = text.strip_suffix('$')?.to_ascii_lowercase();
    valid_host(&host).then_some(host)
}

fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 || !host.contains('.') {
        return false;
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

pub(crate) fn is_placeholder(payload: &str) -> bool {
    let lower = payload.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "xxxx",
        "your",
        "placeholder",
        "replace",
        "changeme",
        "example",
        "dummy",
        "redacted",
        "secret",
        "12345678",
        "abcdefgh",
        "insert",
        "here",
    ];
    if WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    let b = payload.as_bytes();
    let mut run = 1;
    for i in 1..b.len() {
        if b[i] == b[i - 1] {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 1;
        }
    }
    false
}

/// Whether the key at the end of `prefix` (the line up to the key) sits in a comment.
fn in_comment(prefix: &str) -> bool {
    let t = prefix.trim_start();
    if t.starts_with('*') || t.starts_with("/*") || t.starts_with("<!--") || t.starts_with("--") || t.starts_with(';') {
        return true;
    }
    let b = prefix.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'#' if i == 0 || b[i - 1].is_ascii_whitespace() => return true,
                b'/' if b.get(i + 1) == Some(&b'/') && (i == 0 || b[i - 1] != b':') => return true,
                _ => {}
            },
        }
        i += 1;
    }
    false
}

/// Strips a leading comment marker so that `# KEY=value` still yields `KEY`.
fn uncomment(prefix: &str) -> &str {
    let t = prefix.trim_start();
    for marker in ["//", "#", "/*", "*", "<!--", "--", ";"] {
        if let Some(rest) = t.strip_prefix(marker) {
            return rest;
        }
    }
    t
}

/// The variable a key is assigned to, from the text before it on its line (and the previous line for
/// Kubernetes-style `- name: X` / `value: key` pairs).
fn variable_of(prefix: &str, previous_line: &str) -> Option<String> {
    let prefix = tail(prefix, 256);
    let prefix = if in_comment(prefix) { uncomment(prefix) } else { prefix };
    if let Some(c) = DOCKER_VAR.captures(prefix) {
        return c.get(1).map(|m| m.as_str().to_owned());
    }
    let c = ASSIGNED_VAR.captures(prefix)?;
    let ident = c.get(1)?.as_str();
    let ident = ident.trim_start_matches('$').trim_matches('-');
    let last = ident.rsplit('.').next().unwrap_or(ident);
    if last.is_empty() || last.starts_with(|ch: char| ch.is_ascii_digit()) {
        return None;
    }
    if last == "value"
        && let Some(c) = YAML_NAME.captures(previous_line)
    {
        return c.get(1).map(|m| m.as_str().to_owned());
    }
    // Words that assign nothing (`export`, `ENV`, keywords before a bare key).
    if matches!(last, "export" | "ENV" | "ARG" | "return" | "const" | "let" | "var" | "echo" | "default") {
        return None;
    }
    Some(last.to_owned())
}

/// Finds key tokens in one file. Cheap when the file holds none.
pub(crate) fn find(text: &str, lazy: &LazyLines<'_>) -> Vec<KeyHit> {
    let mut hits: Vec<KeyHit> = Vec::new();
    if !KEY.is_match(text) {
        return hits;
    }
    let lines = lazy.get();
    for caps in KEY.captures_iter(text) {
        if hits.len() >= MAX_KEYS_PER_FILE {
            break;
        }
        let Some(token) = KeyToken::read(&caps, text) else { continue };
        let hit = key_hit(text, lines, token);
        // The same key twice on one line is one reference.
        let dup = hits.iter().any(|h| {
            h.line == hit.line
                && h.kind == hit.kind
                && h.environment == hit.environment
                && h.host == hit.host
                && h.fingerprint == hit.fingerprint
                && h.variable == hit.variable
        });
        if !dup {
            hits.push(hit);
        }
    }
    hits
}

/// A key token that is not a placeholder: what the token itself says.
struct KeyToken {
    start: usize,
    end: usize,
    kind: KeyKind,
    environment: KeyEnvironment,
    /// Publishable: the decoded host.
    host: Option<String>,
    /// Secret: the fingerprint of the key up to its last alphanumeric byte.
    fingerprint: Option<String>,
}

impl KeyToken {
    /// Short payloads and placeholders are not keys: `None`.
    fn read(caps: &regex::Captures<'_>, text: &str) -> Option<Self> {
        let (Some(whole), Some(kind), Some(env), Some(payload)) = (caps.get(0), caps.get(1), caps.get(2), caps.get(3))
        else {
            return None;
        };
        let kind = if kind.as_str() == "p" { KeyKind::Publishable } else { KeyKind::Secret };
        let environment = if env.as_str() == "live" { KeyEnvironment::Live } else { KeyEnvironment::Test };
        let mut payload = payload.as_str();
        let (mut host, mut fp) = (None, None);
        match kind {
            KeyKind::Publishable => {
                host = decode_publishable(payload);
                if host.is_none() && (payload.len() < 8 || is_placeholder(payload)) {
                    return None;
                }
            }
            KeyKind::Secret => {
                let end = payload.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(payload.len());
                payload = &payload[..end];
                if payload.len() < 16 || is_placeholder(payload) {
                    return None;
                }
                let key_len = whole.as_str().len() - caps.get(3).map_or(0, |m| m.as_str().len()) + payload.len();
                fp = Some(fingerprint(&text[whole.start()..whole.start() + key_len]));
            }
        }
        Some(KeyToken { start: whole.start(), end: whole.end(), kind, environment, host, fingerprint: fp })
    }
}

/// Adds what surrounds a key token: the variable it is assigned to, whether it sits in a comment, and
/// whether Clerk or another vendor is named in the variable, on the line or on the lines nearby.
fn key_hit(text: &str, lines: &LineIndex, token: KeyToken) -> KeyHit {
    let line = lines.line_of(token.start);
    let l = line as usize;
    let (line_start, line_end) = lines.range(l);
    let prefix = text.get(line_start..token.start).unwrap_or("");
    let suffix = text.get(token.end..line_end).unwrap_or("");
    let previous = if l > 1 { lines.line(text, l - 1) } else { "" };
    let variable = variable_of(prefix, previous);
    let commented = in_comment(tail(prefix, 4096));
    let around = format!("{} {}", tail(prefix, 256), head(suffix, 256));
    let var = variable.as_deref().unwrap_or("");
    let near = near_lines(text, lines, l);
    KeyHit {
        kind: token.kind,
        environment: token.environment,
        line,
        var_clerk: CLERK_WORD.is_match(var),
        var_vendor: VENDOR_WORD.is_match(var),
        line_clerk: CLERK_WORD.is_match(&around),
        line_vendor: VENDOR_WORD.is_match(&around),
        near_clerk: CLERK_WORD.is_match(&near),
        near_vendor: VENDOR_WORD.is_match(&near),
        variable,
        commented,
        host: token.host,
        fingerprint: token.fingerprint,
    }
}

/// The two lines before and after line `l` (not `l` itself), each cut to 512 bytes.
fn near_lines(text: &str, lines: &LineIndex, l: usize) -> String {
    let mut near = String::new();
    for n in l.saturating_sub(2)..=l + 2 {
        if n == 0 || n == l || n > lines.count() {
            continue;
        }
        near.push_str(head(lines.line(text, n), 512));
        near.push('\n');
    }
    near
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(host: &str) -> String {
        format!("pk_test_{}", base64::engine::general_purpose::STANDARD.encode(format!("{host}$")))
    }

    #[test]
    fn decodes_publishable_keys() {
        let key = pk("clerk.example.com");
        assert_eq!(decode_publishable(&key["pk_test_".len()..]).as_deref(), Some("clerk.example.com"));
        // Unpadded and padded forms both decode.
        let key = pk("a.clerk.accounts.dev");
        let payload = &key["pk_test_".len()..];
        assert_eq!(decode_publishable(payload.trim_end_matches('=')).as_deref(), Some("a.clerk.accounts.dev"));
        assert_eq!(decode_publishable("notbase64!!"), None);
        assert_eq!(decode_publishable("aGVsbG8="), None); // "hello": no `$`
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn variables_from_assignments() {
        assert_eq!(variable_of("CLERK_SECRET_KEY=", "").as_deref(), Some("CLERK_SECRET_KEY"));
        assert_eq!(variable_of("export CLERK_SECRET_KEY=\"", "").as_deref(), Some("CLERK_SECRET_KEY"));
        assert_eq!(
            variable_of("  \"NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY\": \"", "").as_deref(),
            Some("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY")
        );
        assert_eq!(variable_of("ENV CLERK_SECRET_KEY ", "").as_deref(), Some("CLERK_SECRET_KEY"));
        assert_eq!(variable_of("ENV CLERK_SECRET_KEY=", "").as_deref(), Some("CLERK_SECRET_KEY"));
        assert_eq!(
            variable_of("          value: ", "        - name: CLERK_SECRET_KEY").as_deref(),
            Some("CLERK_SECRET_KEY")
        );
        assert_eq!(
            variable_of("const key = process.env.CLERK_SECRET_KEY ?? '", "").as_deref(),
            Some("CLERK_SECRET_KEY")
        );
        assert_eq!(variable_of("os.getenv(\"CLERK_SECRET_KEY\", \"", "").as_deref(), Some("CLERK_SECRET_KEY"));
        assert_eq!(
            variable_of("# NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY=", "").as_deref(),
            Some("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY")
        );
        assert_eq!(variable_of("clerk.SetKey(\"", "").as_deref(), None);
        assert_eq!(variable_of("", "").as_deref(), None);
        assert_eq!(variable_of("Set it (for example `", "").as_deref(), None);
        assert_eq!(variable_of("Authorization: Bearer ", "").as_deref(), None);
    }

    #[test]
    fn comments() {
        assert!(in_comment("# KEY="));
        assert!(in_comment("  // const k = '"));
        assert!(in_comment("KEY=value # old: "));
        assert!(!in_comment("const url = \"https://x.dev/#a\" + '"));
        assert!(!in_comment("KEY=\""));
    }

    #[test]
    fn placeholders_are_skipped() {
        let text = "A=pk_test_xxxxxxxxxxxxxxxx\nB=sk_test_YOUR_SECRET_KEY\nC=sk_live_...\nD=sk_test_abc\n";
        assert!(find(text, &LazyLines::new(text)).is_empty());
    }

    #[test]
    fn finds_keys_with_evidence_flags() {
        let text = format!(
            "# Clerk\nNEXT_PUBLIC_CLERK_PUBLISHABLE_KEY={}\nSTRIPE_SECRET_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dcA\n",
            pk("clerk.example.com")
        );
        let hits = find(&text, &LazyLines::new(&text));
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].host.as_deref(), Some("clerk.example.com"));
        assert!(hits[0].var_clerk);
        assert!(hits[1].var_vendor);
        assert!(hits[1].fingerprint.as_deref().is_some_and(|f| f.starts_with("sha256:")));
    }

    #[test]
    fn survives_odd_input() {
        let text = "pk_test_\u{e9}\u{e9}sk_live_\npk_live_====\n".repeat(3);
        let _ = find(&text, &LazyLines::new(&text));
    }

    mod properties {
        use base64::Engine as _;
        use proptest::prelude::*;

        use super::super::decode_publishable;

        fn host() -> impl Strategy<Value = String> {
            proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 2..5)
                .prop_map(|labels| labels.join("."))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any text: an answer or `None`, never a panic; an answer is always a valid lowercase host.
            #[test]
            fn any_payload_decodes_to_a_host_or_nothing(payload in ".{0,300}") {
                if let Some(host) = decode_publishable(&payload) {
                    prop_assert!(host.contains('.') && host.len() <= 253);
                    prop_assert!(host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
                }
            }

            /// Arbitrary bytes behind the `$`, base64-encoded: no panic (non-UTF-8 included).
            #[test]
            fn any_encoded_bytes_decode_to_a_host_or_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let payload = base64::engine::general_purpose::STANDARD.encode(&bytes);
                let _ = decode_publishable(&payload);
                let _ = decode_publishable(payload.trim_end_matches('='));
            }

            /// A key made the way Clerk makes them decodes to its host, padded or not.
            #[test]
            fn real_keys_round_trip(host in host()) {
                let payload = base64::engine::general_purpose::STANDARD.encode(format!("{host}$"));
                prop_assert_eq!(decode_publishable(&payload), Some(host.to_ascii_lowercase()));
                prop_assert_eq!(decode_publishable(payload.trim_end_matches('=')), Some(host.to_ascii_lowercase()));
            }
        }
    }
}
