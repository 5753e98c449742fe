//! Integration tests: real RabbitMQ, PostgreSQL and KMS (moto) on loopback, the project's Clerk sandbox.

mod audit;
mod cli;
mod contracts;
mod failures;
mod harness;
mod http_layer;
mod lifecycle;
mod ops;
mod poison;
mod scenarios;
mod ssrf_corpus;
mod store;
mod webhooks;
