//! The repo-scan artifact (`clerk-repo-artifact/v1`), defined by the extractor crate that writes it.

pub use clerk_repo_scan::artifact::*;

/// Why a stored repo artifact could not be used. Says which limit or rule it broke, never its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactUnreadable {
    #[error("the stored document is over the {0}-byte cap")]
    TooLarge(usize),
    #[error("it lists more than {limit} {field}")]
    TooManyEntries { field: &'static str, limit: usize },
    #[error("it does not follow the artifact schema")]
    Malformed,
}

/// The repo artifact lookup for one job, as the store found it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredArtifact {
    /// No repo scan is stored for the project.
    Absent,
    Present(RepoArtifact),
    /// A repo scan is stored but could not be read.
    Unreadable(ArtifactUnreadable),
}

impl StoredArtifact {
    pub fn artifact(&self) -> Option<&RepoArtifact> {
        match self {
            StoredArtifact::Present(artifact) => Some(artifact),
            _ => None,
        }
    }
}
