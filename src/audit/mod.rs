//! The audit: pure code, no I/O. [`facts`] is what the fetch stage learned of the instance, [`artifact`] what
//! the repo scan found, [`checks`] one module per check, [`evaluate`] runs them all into results and
//! findings.

pub mod artifact;
pub mod checks;
pub mod evaluate;
pub mod facts;
pub mod history;
