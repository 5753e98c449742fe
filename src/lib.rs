//! # clerk-audit
//!
//! A worker that audits a customer's Clerk instance, read-only, on every scan of their project.
//!
//! The module tree is the flow of one job:
//!
//! - [`intake`]: the broker side of jobs: [`intake::job`] decodes a scan job (poison messages are refused
//!   there), [`intake::consumer`] maps each job's outcome to ack / retry / dead-letter, [`intake::broker`]
//!   holds the connection and the topology.
//! - [`credentials`]: the secret key type ([`credentials::secret`]) and its decryption through KMS.
//! - [`fetch`]: the one allowlisted HTTP layer and DNS; gathers [`audit::facts::ClerkFacts`].
//! - [`audit`]: pure code: the facts, the artifact, one module per check, and the evaluation.
//! - [`store`]: all SQL: credentials, artifacts, scans with their results, the outbox, the recorded retries.
//! - [`outbox`]: the findings events (built by pure functions) and the relay that publishes them; the sweep that
//!   sends again the delayed jobs the broker did not return.
//!
//! [`pipeline`] processes one job through these steps and returns an outcome. Around it: [`startup`]
//! wires everything, [`ops`] (health, readiness, metrics, telemetry), [`configuration`], [`error`]
//! (transient vs permanent), [`retry`] (the one retry policy) and [`cli`] (the subcommands).
//! [`test_hooks`] holds fault points that exist only in test builds.
//! `docs/architecture.md` draws the flow and the rules about which module may use which crate.

pub mod audit;
pub mod cli;
pub mod configuration;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod intake;
pub mod ops;
pub mod outbox;
pub mod pipeline;
pub mod retry;
pub mod startup;
pub mod store;
pub mod test_hooks;
