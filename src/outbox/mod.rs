//! The outbox: the findings events ([`events`], pure) and the [`relay`] that publishes stored outbox rows
//! with publisher confirms; [`watch`] prints events for people and scripts.

pub mod events;
pub mod relay;
pub mod watch;
