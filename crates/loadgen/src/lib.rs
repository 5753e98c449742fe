//! Drivers that run the real `clerk-audit worker` binary under load and faults: the chaos run and soak
//! (`clerk-audit-chaos`) and the benchmark. A development tool: never part of the product image.
//!
//! - [`services`]: a private RabbitMQ node and PostgreSQL cluster that a run may restart;
//! - [`rig`]: the sandbox, the KMS stand-in, a fresh database with credentials, the topology, a publisher;
//! - [`scratch`]: names of scratch databases that tell their age, and the drop of those left behind;
//! - [`worker`]: the worker binary as a child process (signals, RSS, CPU time);
//! - [`proxy`]: a TCP proxy that can black-hole a connection;
//! - [`server_cpu`]: the CPU time of the local PostgreSQL and RabbitMQ servers a run uses;
//! - [`verify`]: the end-of-run checks of the delivery guarantees.

pub mod proxy;
pub mod rig;
pub mod scratch;
pub mod server_cpu;
pub mod services;
pub mod verify;
pub mod worker;
