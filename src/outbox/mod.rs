//! The outbox: the findings events ([`events`], pure) and the [`relay`] that publishes stored outbox rows
//! with publisher confirms; [`retention`] deletes sent rows after the retention period; [`watch`] prints
//! events for people and scripts.

pub mod events;
pub mod relay;
pub mod retention;
pub mod watch;
