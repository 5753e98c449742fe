//! The repo-scan artifact (`clerk-repo-artifact/v1`), defined by the extractor crate that writes it.

pub use clerk_repo_scan::artifact::*;
