//! A fast KMS stand-in speaking the real AWS KMS protocol (JSON 1.1 over `POST /`, the operation in
//! `X-Amz-Target: TrentService.<Operation>`, blobs in base64), for benchmarks and chaos runs where moto is too
//! slow. Only what the worker and its tools use: `CreateKey`, `Encrypt`, `Decrypt`, `DescribeKey`.
//!
//! The encryption context is enforced as KMS enforces it: a ciphertext is bound to its key id and to the
//! exact context it was encrypted with (an authentication tag over both), so `Decrypt` with another context,
//! or a ciphertext altered by one bit, answers `InvalidCiphertextException`. Signatures are not checked
//! (any credentials work, as with moto).
//!
//! The sealing is not real cryptography worth keeping secrets in: a SHA-256 keystream and tag under a
//! per-process random master key. It is enough to make a ciphertext unusable outside its context, which is
//! what the worker's behaviour depends on. Keys and the master key live in memory: a restarted stand-in
//! cannot decrypt what an earlier one sealed.
//!
//! Faults: [`KmsStandIn::throttle_for`] answers every call with `ThrottlingException` for a while (a
//! throttling burst), [`KmsStandIn::throttle_next`] the next `n` calls.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
/// Marks a stand-in ciphertext (and its layout version).
const MAGIC: &[u8; 6] = b"CAKMS1";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;

/// How many calls of each kind the stand-in answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KmsCounts {
    pub create_key: u64,
    pub encrypt: u64,
    pub decrypt: u64,
    /// Calls answered `ThrottlingException` (any operation).
    pub throttled: u64,
    /// Calls refused for a reason of their own (bad ciphertext or context, unknown key, bad request).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    create_key: AtomicU64,
    encrypt: AtomicU64,
    decrypt: AtomicU64,
    throttled: AtomicU64,
    refused: AtomicU64,
}

struct KmsState {
    master: [u8; 32],
    keys: Mutex<HashSet<String>>,
    throttle_until: Mutex<Option<Instant>>,
    throttle_next: AtomicU32,
    counters: Counters,
}

/// A running KMS stand-in. Dropping it stops the server (without waiting).
pub struct KmsStandIn {
    addr: SocketAddr,
    state: Arc<KmsState>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Starts the stand-in on `host:port` (`0`: any port). Only loopback addresses are accepted.
pub async fn start_kms(host: IpAddr, port: u16) -> anyhow::Result<KmsStandIn> {
    if !host.is_loopback() {
        bail!("kms stand-in: refusing to bind {host}: only loopback addresses are allowed");
    }
    let listener = TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("kms stand-in: cannot bind {host}:{port}"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(KmsState {
        master: rand::random(),
        keys: Mutex::new(HashSet::new()),
        throttle_until: Mutex::new(None),
        throttle_next: AtomicU32::new(0),
        counters: Counters::default(),
    });
    let router = axum::Router::new().fallback(handle).with_state(state.clone());
    let (shutdown, mut stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        let signal = async move {
            let _ = stop.changed().await;
        };
        let _ = axum::serve(listener, router).with_graceful_shutdown(signal).await;
    });
    Ok(KmsStandIn { addr, state, shutdown, task: Some(task) })
}

impl KmsStandIn {
    /// The endpoint URL for the AWS SDK's endpoint override, e.g. `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a key without a round trip; answers its id.
    pub fn create_key(&self) -> String {
        self.state.create_key()
    }

    /// Every call answers `ThrottlingException` for `duration` from now.
    pub fn throttle_for(&self, duration: Duration) {
        *lock(&self.state.throttle_until) = Some(Instant::now() + duration);
    }

    /// The next `calls` calls answer `ThrottlingException`.
    pub fn throttle_next(&self, calls: u32) {
        self.state.throttle_next.store(calls, Ordering::SeqCst);
    }

    pub fn counts(&self) -> KmsCounts {
        let c = &self.state.counters;
        KmsCounts {
            create_key: c.create_key.load(Ordering::Relaxed),
            encrypt: c.encrypt.load(Ordering::Relaxed),
            decrypt: c.decrypt.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops the server and waits for it (at most 5 s).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for KmsStandIn {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// `clerk-audit-sandbox kms serve`: prints `{"endpoint_url": ...}` as one JSON line and serves until ctrl-c
/// (or SIGTERM).
pub async fn run_kms_cli(host: IpAddr, port: u16) -> anyhow::Result<()> {
    use std::io::Write as _;
    let kms = start_kms(host, port).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", json!({ "endpoint_url": kms.endpoint_url() }))?;
        stdout.flush()?;
    }
    crate::wait_for_stop_signal().await?;
    kms.shutdown().await;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn arn(key_id: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}")
}

/// A key id as the caller named it (id or key ARN) -> the bare id.
fn bare_key_id(named: &str) -> &str {
    named.rsplit_once(":key/").map(|(_, id)| id).unwrap_or(named)
}

#[derive(Debug)]
struct Refusal {
    kind: &'static str,
    message: String,
}

fn refuse(kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { kind, message: message.into() }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest {
    key_id: String,
    plaintext: String,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: String,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyRequest {
    key_id: String,
}

impl KmsState {
    fn create_key(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        lock(&self.keys).insert(id.clone());
        id
    }

    fn throttled(&self) -> bool {
        let mut until = lock(&self.throttle_until);
        if let Some(end) = *until {
            if Instant::now() < end {
                return true;
            }
            *until = None;
        }
        drop(until);
        self.throttle_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    fn known_key(&self, named: &str) -> Result<String, Refusal> {
        let id = bare_key_id(named);
        if lock(&self.keys).contains(id) {
            Ok(id.to_owned())
        } else {
            Err(refuse("NotFoundException", format!("Key '{}' does not exist", arn(id))))
        }
    }

    fn keystream_xor(&self, key_id: &str, nonce: &[u8], data: &mut [u8]) {
        for (block, chunk) in data.chunks_mut(32).enumerate() {
            let pad = Sha256::new()
                .chain_update(self.master)
                .chain_update(b"stream")
                .chain_update(key_id.as_bytes())
                .chain_update(nonce)
                .chain_update((block as u64).to_be_bytes())
                .finalize();
            for (byte, p) in chunk.iter_mut().zip(pad.iter()) {
                *byte ^= p;
            }
        }
    }

    /// Binds key id, context, nonce and ciphertext together.
    fn tag(&self, key_id: &str, context: &BTreeMap<String, String>, nonce: &[u8], sealed: &[u8]) -> [u8; TAG_LEN] {
        // A BTreeMap serializes in key order: one canonical form per context.
        let context = serde_json::to_vec(context).unwrap_or_default();
        let inner = Sha256::new()
            .chain_update(b"tag")
            .chain_update((key_id.len() as u64).to_be_bytes())
            .chain_update(key_id.as_bytes())
            .chain_update((context.len() as u64).to_be_bytes())
            .chain_update(&context)
            .chain_update(nonce)
            .chain_update(sealed)
            .finalize();
        Sha256::new().chain_update(self.master).chain_update(inner).finalize().into()
    }

    fn seal(&self, key_id: &str, context: &BTreeMap<String, String>, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plaintext.to_vec();
        self.keystream_xor(key_id, &nonce, &mut sealed);
        let tag = self.tag(key_id, context, &nonce, &sealed);
        let mut blob = Vec::with_capacity(MAGIC.len() + 1 + key_id.len() + NONCE_LEN + TAG_LEN + sealed.len());
        blob.extend_from_slice(MAGIC);
        blob.push(key_id.len() as u8);
        blob.extend_from_slice(key_id.as_bytes());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&tag);
        blob.extend_from_slice(&sealed);
        blob
    }

    /// Answers (key id, plaintext), or why not.
    fn open(
        &self,
        blob: &[u8],
        named_key: Option<&str>,
        context: &BTreeMap<String, String>,
    ) -> Result<(String, Vec<u8>), Refusal> {
        let invalid = || refuse("InvalidCiphertextException", "");
        let rest = blob.strip_prefix(MAGIC.as_slice()).ok_or_else(invalid)?;
        let (&id_len, rest) = rest.split_first().ok_or_else(invalid)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(invalid());
        }
        let (key_id, rest) = rest.split_at(id_len);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (tag, sealed) = rest.split_at(TAG_LEN);
        let key_id = std::str::from_utf8(key_id).map_err(|_| invalid())?.to_owned();
        if let Some(named) = named_key
            && bare_key_id(named) != key_id
        {
            return Err(refuse(
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this operation.",
            ));
        }
        self.known_key(&key_id)?;
        if self.tag(&key_id, context, nonce, sealed).as_slice() != tag {
            return Err(invalid());
        }
        let mut plaintext = sealed.to_vec();
        self.keystream_xor(&key_id, nonce, &mut plaintext);
        Ok((key_id, plaintext))
    }

    fn key_metadata(&self, key_id: &str) -> Value {
        json!({
            "AWSAccountId": ACCOUNT,
            "KeyId": key_id,
            "Arn": arn(key_id),
            "CreationDate": chrono::Utc::now().timestamp(),
            "Enabled": true,
            "Description": "",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": false,
        })
    }

    fn operate(&self, operation: &str, body: &[u8]) -> Result<Value, Refusal> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let parse_error = |e: serde_json::Error| refuse("SerializationException", e.to_string());
        match operation {
            "CreateKey" => {
                self.counters.create_key.fetch_add(1, Ordering::Relaxed);
                let id = self.create_key();
                Ok(json!({ "KeyMetadata": self.key_metadata(&id) }))
            }
            "DescribeKey" => {
                let request: DescribeKeyRequest = serde_json::from_slice(body).map_err(parse_error)?;
                let id = self.known_key(&request.key_id)?;
                Ok(json!({ "KeyMetadata": self.key_metadata(&id) }))
            }
            "Encrypt" => {
                self.counters.encrypt.fetch_add(1, Ordering::Relaxed);
                let request: EncryptRequest = serde_json::from_slice(body).map_err(parse_error)?;
                let key_id = self.known_key(&request.key_id)?;
                let plaintext = b64
                    .decode(&request.plaintext)
                    .map_err(|_| refuse("ValidationException", "Plaintext is not valid base64"))?;
                if plaintext.is_empty() || plaintext.len() > 4096 || key_id.len() > usize::from(u8::MAX) {
                    return Err(refuse("ValidationException", "Plaintext must be 1 to 4096 bytes"));
                }
                let blob = self.seal(&key_id, &request.encryption_context, &plaintext);
                Ok(json!({
                    "CiphertextBlob": b64.encode(blob),
                    "KeyId": arn(&key_id),
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                }))
            }
            "Decrypt" => {
                self.counters.decrypt.fetch_add(1, Ordering::Relaxed);
                let request: DecryptRequest = serde_json::from_slice(body).map_err(parse_error)?;
                let blob = b64
                    .decode(&request.ciphertext_blob)
                    .map_err(|_| refuse("ValidationException", "CiphertextBlob is not valid base64"))?;
                let (key_id, plaintext) = self.open(&blob, request.key_id.as_deref(), &request.encryption_context)?;
                Ok(json!({
                    "Plaintext": b64.encode(plaintext),
                    "KeyId": arn(&key_id),
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                }))
            }
            other => Err(refuse("UnknownOperationException", format!("unsupported operation {other}"))),
        }
    }
}

fn error_response(refusal: Refusal) -> Response {
    let body = json!({ "__type": refusal.kind, "message": refusal.message });
    (
        StatusCode::BAD_REQUEST,
        [("content-type", CONTENT_TYPE), ("x-amzn-errortype", refusal.kind)],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

async fn handle(State(state): State<Arc<KmsState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(operation) = target.strip_prefix("TrentService.") else {
        state.counters.refused.fetch_add(1, Ordering::Relaxed);
        return error_response(refuse("UnknownOperationException", "missing X-Amz-Target: TrentService.*"));
    };
    if state.throttled() {
        state.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return error_response(refuse("ThrottlingException", "Rate exceeded"));
    }
    match state.operate(operation, &body) {
        Ok(answer) => {
            ([("content-type", CONTENT_TYPE)], serde_json::to_vec(&answer).unwrap_or_default()).into_response()
        }
        Err(refusal) => {
            state.counters.refused.fetch_add(1, Ordering::Relaxed);
            error_response(refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> KmsState {
        KmsState {
            master: [7; 32],
            keys: Mutex::new(HashSet::new()),
            throttle_until: Mutex::new(None),
            throttle_next: AtomicU32::new(0),
            counters: Counters::default(),
        }
    }

    fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_ciphertext_opens_only_with_its_key_and_context() {
        let kms = state();
        let key = kms.create_key();
        let other_key = kms.create_key();
        let ctx = context(&[("project_id", "prj_1"), ("key_ref", "a")]);
        let blob = kms.seal(&key, &ctx, b"sk_test_secret");
        assert!(!blob.windows(6).any(|w| w == b"secret"), "the plaintext is not visible in the blob");

        let (opened_key, plaintext) = kms.open(&blob, Some(&arn(&key)), &ctx).expect("opens");
        assert_eq!((opened_key.as_str(), plaintext.as_slice()), (key.as_str(), b"sk_test_secret".as_slice()));

        let wrong_context = context(&[("project_id", "prj_2"), ("key_ref", "a")]);
        assert_eq!(kms.open(&blob, None, &wrong_context).err().map(|r| r.kind), Some("InvalidCiphertextException"));
        assert_eq!(kms.open(&blob, None, &BTreeMap::new()).err().map(|r| r.kind), Some("InvalidCiphertextException"));
        assert_eq!(kms.open(&blob, Some(&other_key), &ctx).err().map(|r| r.kind), Some("IncorrectKeyException"));
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(kms.open(&flipped, None, &ctx).err().map(|r| r.kind), Some("InvalidCiphertextException"));
        assert_eq!(kms.open(b"garbage", None, &ctx).err().map(|r| r.kind), Some("InvalidCiphertextException"));
    }

    #[test]
    fn throttling_counts_down_then_clears() {
        let kms = state();
        kms.throttle_next.store(2, Ordering::SeqCst);
        assert!(kms.throttled());
        assert!(kms.throttled());
        assert!(!kms.throttled());
        *lock(&kms.throttle_until) = Some(Instant::now() + Duration::from_secs(60));
        assert!(kms.throttled());
        *lock(&kms.throttle_until) = Some(Instant::now() - Duration::from_secs(1));
        assert!(!kms.throttled());
    }

    #[tokio::test]
    async fn the_aws_sdk_encrypts_and_decrypts_through_the_stand_in() {
        let kms = start_kms(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0).await.expect("starts");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(kms.endpoint_url())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let client = aws_sdk_kms::Client::new(&config);
        let key = client.create_key().send().await.expect("CreateKey");
        let key_id = key.key_metadata().expect("metadata").key_id().to_owned();
        let encrypted = client
            .encrypt()
            .key_id(&key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(b"hello".to_vec()))
            .encryption_context("project_id", "prj_1")
            .send()
            .await
            .expect("Encrypt");
        let blob = encrypted.ciphertext_blob().expect("ciphertext").clone();
        let decrypted = client
            .decrypt()
            .key_id(&key_id)
            .ciphertext_blob(blob.clone())
            .encryption_context("project_id", "prj_1")
            .send()
            .await
            .expect("Decrypt");
        assert_eq!(decrypted.plaintext().map(|b| b.as_ref()), Some(b"hello".as_slice()));

        let refused = client
            .decrypt()
            .ciphertext_blob(blob)
            .encryption_context("project_id", "prj_2")
            .send()
            .await
            .expect_err("another context is refused");
        assert!(refused.into_service_error().is_invalid_ciphertext_exception());

        kms.throttle_next(1);
        let throttled = client.create_key().send().await.expect_err("throttled");
        assert_eq!(
            aws_sdk_kms::error::ProvideErrorMetadata::code(&throttled.into_service_error()),
            Some("ThrottlingException")
        );
        let counts = kms.counts();
        assert_eq!((counts.encrypt, counts.decrypt, counts.throttled, counts.refused), (1, 2, 1, 1));
        kms.shutdown().await;
    }
}
