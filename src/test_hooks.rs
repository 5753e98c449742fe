//! Fault points for child-process tests. Compiled in only with the `test-hooks` cargo feature, which the
//! crate's own tests turn on and the product build (`cargo build --release --bin clerk-audit`, the image)
//! never does; without it every hook is a constant `false` and the variable below is never read.
//!
//! `CLERK_TEST_HOOK=crash_after_publish_before_ack`: the consumer never acknowledges a completed job, and
//! the outbox relay aborts the process right after the broker confirmed an event and before the row is
//! marked sent. That is the window in which the job is committed and its event is out, but the delivery is
//! still unacknowledged: a crash there makes the broker redeliver the job and the restarted relay publish
//! the event again (with the same id).

/// The environment variable naming the active hook.
pub const VAR: &str = "CLERK_TEST_HOOK";

#[cfg(feature = "test-hooks")]
fn active(name: &str) -> bool {
    static HOOK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| std::env::var(VAR).ok()).as_deref() == Some(name)
}

#[cfg(not(feature = "test-hooks"))]
fn active(_name: &str) -> bool {
    false
}

/// The consumer holds the acknowledgement of a completed job forever.
pub fn hold_ack_of_completed_jobs() -> bool {
    active("crash_after_publish_before_ack")
}

/// The relay aborts the process once the broker confirmed an event, before marking it sent.
pub fn crash_after_confirmed_publish() -> bool {
    active("crash_after_publish_before_ack")
}
