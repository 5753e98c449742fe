//! # clerk-audit
//!
//! A worker that audits a customer's Clerk instance, read-only, on every scan of their project.
//!
//! The data flow of one job is visible in the module names:
//!
//! - [`job`]: decode the scan job from RabbitMQ (poison messages are refused here).
//! - [`decrypt`]: load the credential row and decrypt the secret key through KMS.
//! - [`fetch`]: the allowlisted HTTP layer and DNS; gathers [`facts::ClerkFacts`].
//! - [`artifact`]: the repo-scan artifact the checks cross-reference.
//! - [`checks`] and [`evaluate`]: pure checks over facts and artifact; findings with fingerprints.
//! - [`persist`]: one transaction stores the scan, its results and an outbox row.
//! - [`publish`]: the outbox relay publishing CloudEvents with publisher confirms.
//!
//! Around it: [`pipeline`] processes one job and returns an outcome; [`consumer`] maps outcomes to
//! ack / retry / dead-letter; [`startup`] wires everything; [`ops`] (health, readiness) and [`metrics`]
//! (Prometheus) on the ops port; [`configuration`], [`telemetry`] (logs and traces), [`retry`]
//! (the one retry policy), [`secret`] (the key type), [`sandbox`] (Clerk/Svix stand-in for tests and
//! demos), [`repo_scan`] (the artifact extractor) and [`cli`].

pub mod artifact;
pub mod broker;
pub mod checks;
pub mod cli;
pub mod configuration;
pub mod consumer;
pub mod db;
pub mod decrypt;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod facts;
pub mod fetch;
pub mod job;
pub mod metrics;
pub mod ops;
pub mod persist;
pub mod pipeline;
pub mod publish;
pub mod repo_scan;
pub mod report;
pub mod retry;
pub mod sandbox;
pub mod secret;
pub mod startup;
pub mod telemetry;
