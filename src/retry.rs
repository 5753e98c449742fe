//! The retry policy, in one place: exponential backoff with jitter, bounded in attempts and time.
//!
//! Everything that retries inside a job (outbound calls, KMS, database) goes through [`retry`]; the
//! `backoff` crate stays behind this module.

use std::future::Future;
use std::time::Duration;

use backoff::ExponentialBackoff;

/// Bounds of one retried operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    /// For calls inside a job: about 30 s in all at most.
    pub fn in_job(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            initial_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(30),
        }
    }

    /// Fast policy for tests of the retry behaviour itself.
    pub fn immediate(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        }
    }

    /// For reconnect loops (broker, database): unbounded attempts, capped interval.
    pub fn reconnect() -> ExponentialBackoff {
        ExponentialBackoff {
            initial_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(10),
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff {
            initial_interval: self.initial_interval,
            current_interval: self.initial_interval,
            max_interval: self.max_interval,
            max_elapsed_time: Some(self.max_elapsed),
            randomization_factor: 0.5,
            multiplier: 2.0,
            ..ExponentialBackoff::default()
        }
    }
}

/// What an attempt's failure means for the next attempt.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Try again after the backoff interval.
    Retry(E),
    /// Try again after this long (a server's Retry-After), if the policy's time allows.
    RetryAfter(E, Duration),
    /// Stop now.
    Stop(E),
}

/// Runs `operation` until it succeeds, fails with [`Attempt::Stop`], or the policy's bounds are reached;
/// then the last error is returned.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, mut operation: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let mut attempt = 0u32;
    let op = || {
        attempt += 1;
        let this_attempt = attempt;
        let future = operation(this_attempt);
        async move {
            match future.await {
                Ok(value) => Ok(value),
                Err(Attempt::Stop(e)) => Err(backoff::Error::permanent(e)),
                Err(Attempt::Retry(e) | Attempt::RetryAfter(e, _)) if this_attempt >= policy.max_attempts => {
                    Err(backoff::Error::permanent(e))
                }
                Err(Attempt::Retry(e)) => Err(backoff::Error::transient(e)),
                Err(Attempt::RetryAfter(e, after)) => Err(backoff::Error::retry_after(e, after)),
            }
        }
    };
    backoff::future::retry(policy.backoff(), op).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn stops_after_max_attempts_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let result: Result<(), u32> = retry(RetryPolicy::immediate(3), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(Attempt::Retry(n)) }
        })
        .await;
        assert_eq!(result, Err(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stop_is_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = retry(RetryPolicy::immediate(5), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Attempt::Stop("rejected")) }
        })
        .await;
        assert_eq!(result, Err("rejected"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let result: Result<u32, &str> = retry(RetryPolicy::immediate(5), |n| async move {
            if n < 3 { Err(Attempt::RetryAfter("busy", Duration::from_millis(1))) } else { Ok(n) }
        })
        .await;
        assert_eq!(result, Ok(3));
    }
}
