//! The outbox: the findings events ([`events`], pure) and the [`relay`] that publishes stored outbox rows
//! with publisher confirms; [`retention`] deletes sent rows after the retention period; [`watch`] prints
//! events for people and scripts. [`resend`] relays the other rows the worker publishes from the database: the
//! delayed jobs the broker did not return (`scan_retries`).

pub mod events;
pub mod relay;
pub mod resend;
pub mod retention;
pub mod watch;
