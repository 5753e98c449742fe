//! The machine-readable contracts of `contracts/` (JSON Schemas and the AsyncAPI document), embedded in the
//! binary so `clerk-audit schema <name>` prints exactly the files the tests hold true.

/// One file of `contracts/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// The file name inside `contracts/`.
    pub file: &'static str,
    /// The file's text, as committed.
    pub text: &'static str,
}

macro_rules! contract {
    ($file:literal) => {
        Contract { file: $file, text: include_str!(concat!("../../contracts/", $file)) }
    };
}

pub const JOB: Contract = contract!("clerk-scan-job.v1.schema.json");
pub const ARTIFACT: Contract = contract!("clerk-repo-artifact.v1.schema.json");
pub const FINDING: Contract = contract!("clerk-finding.v1.schema.json");
pub const CLOUDEVENT: Contract = contract!("clerk-audit-cloudevent.v1.schema.json");
pub const COMPLETED_EVENT: Contract = contract!("clerk-audit-completed-event.v1.schema.json");
pub const COMPLETED_DATA: Contract = contract!("clerk-audit-completed-data.v1.schema.json");
pub const FAILED_EVENT: Contract = contract!("clerk-audit-failed-event.v1.schema.json");
pub const FAILED_DATA: Contract = contract!("clerk-audit-failed-data.v1.schema.json");
pub const ASYNCAPI: Contract = contract!("asyncapi.yaml");

/// Every JSON Schema; the event schemas reference the envelope, data and finding schemas by relative URI.
pub const SCHEMAS: &[Contract] =
    &[JOB, ARTIFACT, FINDING, CLOUDEVENT, COMPLETED_EVENT, COMPLETED_DATA, FAILED_EVENT, FAILED_DATA];

/// What `clerk-audit schema` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaName {
    /// The scan job (`clerk-scan-job/v1`).
    Job,
    /// The repo-scan artifact (`clerk-repo-artifact/v1`).
    Artifact,
    /// One finding of a completed event.
    Finding,
    /// The whole `clerk.audit.completed` CloudEvent.
    Event,
    /// The `data` of `clerk.audit.completed`.
    EventData,
    /// The whole `clerk.audit.failed` CloudEvent.
    EventFailed,
    /// The `data` of `clerk.audit.failed`.
    EventFailedData,
    /// The CloudEvents envelope both events share.
    Cloudevent,
    /// The AsyncAPI 3.0 document of the broker side (YAML).
    Asyncapi,
}

impl SchemaName {
    pub fn contract(self) -> Contract {
        match self {
            SchemaName::Job => JOB,
            SchemaName::Artifact => ARTIFACT,
            SchemaName::Finding => FINDING,
            SchemaName::Event => COMPLETED_EVENT,
            SchemaName::EventData => COMPLETED_DATA,
            SchemaName::EventFailed => FAILED_EVENT,
            SchemaName::EventFailedData => FAILED_DATA,
            SchemaName::Cloudevent => CLOUDEVENT,
            SchemaName::Asyncapi => ASYNCAPI,
        }
    }
}
