//! The SSRF corpus: every way of naming an internal address the worker knows of, sent through the real
//! HTTP layer with production settings (`allow_loopback = false`). Each must be refused before any socket
//! opens: loopback forms point at a listener that must see no connection, names resolve through a table
//! the test controls (and special-use names are never even looked up), and no refusal names an address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clerk_audit::configuration::HttpSettings;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::fetch::allowlist::CallMethod;
use clerk_audit::fetch::http::{CallError, HttpLayer, NameResolver};
use clerk_audit::retry::RetryPolicy;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn settings(allow_loopback: bool) -> HttpSettings {
    HttpSettings {
        allow_loopback,
        cleartext_http2: false,
        connect_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        max_body_bytes: 1_048_576,
        max_attempts: 1,
        max_retry_after_secs: 1,
    }
}

/// A resolver answering from a table, recording every name it was asked.
#[derive(Default)]
struct TableResolver {
    answers: BTreeMap<String, Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

/// The layer owns its resolver; the test keeps a handle on the same table to read what was asked.
struct Shared(Arc<TableResolver>);

impl NameResolver for Shared {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        self.0.asked.lock().unwrap().push(host.clone());
        let answer = self.0.answers.get(host.trim_end_matches('.')).cloned();
        Box::pin(async move { answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name")) })
    }
}

/// A loopback listener counting the connections it accepts.
async fn trap() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

async fn wait_for(accepted: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "the listener never saw the control connection");
        tokio::task::yield_now().await;
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn every_internal_address_form_is_refused_before_connecting() {
    let (p, accepted) = trap().await;
    let resolver = Arc::new(TableResolver {
        answers: [
            ("ten.attacker.example", vec![ip("10.1.2.3")]),
            ("one72.attacker.example", vec![ip("172.20.0.1")]),
            ("one92.attacker.example", vec![ip("192.168.1.1")]),
            ("loop.attacker.example", vec![ip("127.0.0.1")]),
            ("loop8.attacker.example", vec![ip("127.8.9.10")]),
            ("meta.attacker.example", vec![ip("169.254.169.254")]),
            ("cgnat.attacker.example", vec![ip("100.100.0.1")]),
            ("zero.attacker.example", vec![ip("0.0.0.0")]),
            ("bench.attacker.example", vec![ip("198.18.0.1")]),
            ("ula.attacker.example", vec![ip("fd00::1")]),
            ("ec2v6.attacker.example", vec![ip("fd00:ec2::254")]),
            ("v6loop.attacker.example", vec![ip("::1")]),
            ("v6link.attacker.example", vec![ip("fe80::1")]),
            ("mapped.attacker.example", vec![ip("::ffff:10.0.0.1")]),
            ("nat64.attacker.example", vec![ip("64:ff9b::a9fe:a9fe")]),
            ("sixtofour.attacker.example", vec![ip("2002:7f00:1::1")]),
            ("mixed.attacker.example", vec![ip("8.8.8.8"), ip("127.0.0.1")]),
        ]
        .into_iter()
        .map(|(name, addrs)| (name.to_owned(), addrs))
        .collect(),
        asked: Mutex::default(),
    });
    let corpus: Vec<String> = [
        // IPv4 literals in every notation the URL parser accepts.
        "https://127.0.0.1:{p}",
        "https://2130706433:{p}",
        "https://0x7f000001:{p}",
        "https://0177.0.0.1:{p}",
        "https://127.1:{p}",
        "https://0x7f.0.0.1:{p}",
        "https://127.0.0.1.:{p}",
        "https://0.0.0.0:{p}",
        "https://169.254.169.254",
        "https://0xa9fea9fe",
        "https://2852039166",
        "https://10.0.0.1",
        "https://172.16.0.1",
        "https://192.168.0.1",
        "https://100.64.0.1",
        "https://198.18.0.1",
        "https://192.0.2.1",
        "https://255.255.255.255",
        // IPv6 forms, bare and carrying an IPv4 address.
        "https://[::1]:{p}",
        "https://[::]:{p}",
        "https://[::ffff:127.0.0.1]:{p}",
        "https://[::ffff:7f00:1]:{p}",
        "https://[::127.0.0.1]:{p}",
        "https://[::a9fe:a9fe]",
        "https://[::ffff:0:a9fe:a9fe]",
        "https://[64:ff9b::a9fe:a9fe]",
        "https://[64:ff9b::127.0.0.1]:{p}",
        "https://[64:ff9b:1::808:808]",
        "https://[2001:0:4136:e378:8000:63bf:5601:5601]",
        "https://[2002:a9fe:a9fe::1]",
        "https://[2002:7f00:1::]:{p}",
        "https://[2001:db8::1]",
        "https://[3fff::1]",
        "https://[2001:2::1]",
        "https://[100::1]",
        "https://[fd00:ec2::254]",
        "https://[fe80::1]",
        "https://[ff02::1]",
        // Special-use names: never looked up.
        "https://metadata.google.internal",
        "https://metadata.google.internal.",
        "https://localhost:{p}",
        "https://localhost.:{p}",
        "https://LOCALHOST:{p}",
        "https://api.localhost:{p}",
        "https://printer.local",
        // Names resolving to each internal range (the table above); a trailing dot changes nothing.
        "https://ten.attacker.example",
        "https://ten.attacker.example.",
        "https://one72.attacker.example",
        "https://one92.attacker.example",
        "https://loop.attacker.example:{p}",
        "https://loop8.attacker.example:{p}",
        "https://meta.attacker.example",
        "https://cgnat.attacker.example",
        "https://zero.attacker.example:{p}",
        "https://bench.attacker.example",
        "https://ula.attacker.example",
        "https://ec2v6.attacker.example",
        "https://v6loop.attacker.example:{p}",
        "https://v6link.attacker.example",
        "https://mapped.attacker.example",
        "https://nat64.attacker.example",
        "https://sixtofour.attacker.example",
        "https://mixed.attacker.example:{p}",
        // Plain http, even to a public address.
        "http://127.0.0.1:{p}",
        "http://8.8.8.8",
        "http://ten.attacker.example",
        // Userinfo tricks: the host is what follows the last `@`.
        "https://api.clerk.com@127.0.0.1:{p}",
        "https://api.clerk.com:443@169.254.169.254",
        "https://127.0.0.1:{p}@api.clerk.com",
        "https://user:pw@ten.attacker.example",
    ]
    .iter()
    .map(|entry| entry.replace("{p}", &p.to_string()))
    .collect();
    assert!(corpus.len() >= 40, "{}", corpus.len());

    let key = ClerkSecretKey::from_plaintext(b"sk_live_corpus0000000000".to_vec()).unwrap();
    let production = settings(false);
    let mut refused = 0;
    for entry in &corpus {
        let base: url::Url = entry.parse().unwrap_or_else(|e| panic!("{entry}: {e}"));
        let http = HttpLayer::new(&production, base.clone(), "2026-05-12", 50, RetryPolicy::immediate(1))
            .unwrap()
            .with_name_resolver(Arc::new(Shared(resolver.clone())))
            .unwrap();
        let calls = http.session("prj/corpus".into(), &key);
        let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err(entry);
        assert!(
            matches!(error, CallError::AddressRefused(_) | CallError::NotAllowed(_)),
            "{entry}: not refused but {error:?}"
        );
        // The reason never names the internal address the host is or resolves to.
        let reason = error.to_string();
        let host = base.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let resolved = resolver.answers.get(host.trim_end_matches('.')).cloned().unwrap_or_default();
        for shown in std::iter::once(host.clone()).chain(resolved.iter().map(IpAddr::to_string)) {
            assert!(!reason.contains(&shown), "{entry}: the reason {reason:?} names {shown}");
        }
        refused += 1;
    }
    assert_eq!(refused, corpus.len(), "100% of the corpus is refused");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no request reached the loopback listener");
    let asked = resolver.asked.lock().unwrap().clone();
    for special in ["metadata.google.internal", "localhost", "api.localhost", "printer.local"] {
        assert!(!asked.iter().any(|name| name.trim_end_matches('.').eq_ignore_ascii_case(special)), "{asked:?}");
    }
    // Control: the listener does see a connection when one is made.
    let _control = tokio::net::TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    wait_for(&accepted, 1).await;
}

/// A redirect is never followed, even to an address the layer would otherwise reach.
#[tokio::test]
async fn redirects_are_not_followed() {
    let (trap_port, accepted) = trap().await;
    let redirector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_port = redirector.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let reply = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{trap_port}/v1/instance\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let key = ClerkSecretKey::from_plaintext(b"sk_live_corpus0000000000".to_vec()).unwrap();
    // Test mode, so the redirector on loopback can be reached at all; the layer still must not follow.
    let base: url::Url = format!("http://127.0.0.1:{redirector_port}").parse().unwrap();
    let http = HttpLayer::new(&settings(true), base, "2026-05-12", 50, RetryPolicy::immediate(1)).unwrap();
    let calls = http.session("prj/corpus".into(), &key);
    let error = calls.send(CallMethod::Get, calls.backend_url("/v1/instance")).await.expect_err("redirect");
    assert_eq!(error, CallError::Redirect(302));
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the redirect target saw no connection");
}
