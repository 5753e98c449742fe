//! Placeholder: being written.
use super::{CheckInput, CheckMeta, Severity, Verdict};

pub const META: CheckMeta = CheckMeta { id: "PENDING", severity: Severity::Info, title: "", why: "", fix: "" };

pub fn evaluate(_input: &CheckInput<'_>) -> Verdict {
    Verdict::Error("not yet implemented".into())
}
