//! SARIF 2.1.0 output of `clerk-audit audit`, for GitHub code scanning and other SARIF consumers: one rule
//! per check with its metadata, one result per finding, located in the repo when the finding has repo
//! evidence.

use serde_json::{Value, json};

use crate::audit::checks::{self, Severity};
use crate::audit::evaluate::{CheckStatus, Evaluation, Finding};

pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `partialFingerprints` key of a finding's stable fingerprint.
pub const FINGERPRINT_KEY: &str = "clerkAuditFingerprint/v1";

/// SARIF's `level` of a severity.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Blocker => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// GitHub's `security-severity` (a CVSS-like score) of a severity, which ranks alerts as critical/medium/low.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Blocker => "9.0",
        Severity::Warning => "5.0",
        Severity::Info => "2.0",
    }
}

/// `DEV-KEY-001`-style ids become `ClerkDevKey001`: SARIF's rule `name` is an identifier-like label.
fn rule_name(id: &str) -> String {
    id.split('-')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Where in the repo a finding points: its details name files and lines as `file` + `line`/`lines`, as a
/// `handler` object, or as a `references` list. The first is the location, the rest related locations.
pub fn repo_locations(finding: &Finding) -> Vec<(String, u32)> {
    if finding.evidence.repo.is_none() {
        return Vec::new();
    }
    let details = &finding.evidence.details;
    let place = |value: &Value| -> Vec<(String, u32)> {
        let Some(file) = value.get("file").and_then(Value::as_str) else { return Vec::new() };
        let line = value
            .get("line")
            .and_then(Value::as_u64)
            .or_else(|| value.get("lines").and_then(|lines| lines.get(0)).and_then(Value::as_u64))
            .unwrap_or(1);
        vec![(file.to_owned(), u32::try_from(line).unwrap_or(1).max(1))]
    };
    let mut found = place(details);
    if let Some(handler) = details.get("handler") {
        found.extend(place(handler));
    }
    if let Some(references) = details.get("references").and_then(Value::as_array) {
        found.extend(references.iter().flat_map(place));
    }
    found
}

fn physical(file: &str, line: u32) -> Value {
    json!({
        "physicalLocation": {
            "artifactLocation": { "uri": file, "uriBaseId": "%SRCROOT%" },
            "region": { "startLine": line },
        }
    })
}

/// Where a finding without repo evidence (an instance setting) is shown: GitHub code scanning refuses a
/// result without a location, so such findings are anchored at a file of the audited repo (see
/// [`anchor`]); the message says the problem is in the Clerk instance.
pub type Anchor<'a> = Option<(&'a str, u32)>;

/// The anchor of instance-level findings: the first place the repo configures Clerk (a key reference, by
/// file and line), else the first of the usual project manifests that exists under `repo`.
pub fn anchor(
    artifact: Option<&crate::audit::artifact::RepoArtifact>,
    repo: Option<&std::path::Path>,
) -> Option<(String, u32)> {
    let reference = artifact
        .and_then(|artifact| artifact.key_references.iter().min_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line))));
    if let Some(reference) = reference {
        return Some((reference.file.clone(), reference.line.max(1)));
    }
    const MANIFESTS: &[&str] = &[
        "package.json",
        "go.mod",
        "pyproject.toml",
        "requirements.txt",
        "Cargo.toml",
        "Gemfile",
        "composer.json",
        "README.md",
    ];
    let repo = repo?;
    MANIFESTS.iter().find(|name| repo.join(name).is_file()).map(|name| ((*name).to_owned(), 1))
}

fn result(finding: &Finding, rule_index: usize, anchor: Anchor<'_>) -> Value {
    let mut message = finding.title.clone();
    for sentence in [&finding.evidence.repo, &finding.evidence.clerk].into_iter().flatten() {
        message.push_str(". ");
        message.push_str(sentence);
    }
    let mut result = json!({
        "ruleId": finding.check_id,
        "ruleIndex": rule_index,
        "level": level(finding.severity),
        "message": { "text": message },
        "partialFingerprints": { FINGERPRINT_KEY: finding.fingerprint },
        "properties": { "evidence": finding.evidence.details },
    });
    let mut locations = repo_locations(finding).into_iter();
    if let Some((file, line)) = locations.next() {
        result["locations"] = json!([physical(&file, line)]);
        let related: Vec<Value> = locations
            .enumerate()
            .map(|(index, (file, line))| {
                let mut location = physical(&file, line);
                location["id"] = json!(index + 1);
                location
            })
            .collect();
        if !related.is_empty() {
            result["relatedLocations"] = Value::Array(related);
        }
    } else if let Some((file, line)) = anchor {
        let mut location = physical(file, line);
        location["message"] = json!({ "text": "setting of the connected Clerk instance, not of this file" });
        result["locations"] = json!([location]);
    }
    result
}

/// The SARIF log of an evaluation. Checks that could not be evaluated are tool notifications.
pub fn render(evaluation: &Evaluation, anchor: Anchor<'_>) -> Value {
    let rules: Vec<Value> = checks::ALL
        .iter()
        .map(|check| {
            let meta = check.meta;
            json!({
                "id": meta.id,
                "name": rule_name(meta.id),
                "shortDescription": { "text": meta.title },
                "fullDescription": { "text": meta.why },
                "help": { "text": meta.fix },
                "defaultConfiguration": { "level": level(meta.severity) },
                "properties": {
                    "tags": ["security", "clerk"],
                    "security-severity": security_severity(meta.severity),
                    "severity": meta.severity.as_str(),
                },
            })
        })
        .collect();
    let results: Vec<Value> = evaluation
        .findings
        .iter()
        .map(|finding| {
            let index = checks::ALL.iter().position(|check| check.meta.id == finding.check_id).unwrap_or(0);
            result(finding, index, anchor)
        })
        .collect();
    let notifications: Vec<Value> = evaluation
        .results
        .iter()
        .filter(|r| r.status == CheckStatus::Error)
        .map(|r| {
            json!({
                "level": "error",
                "message": { "text": format!("{} could not be evaluated: {}", r.check_id, r.reason.as_deref().unwrap_or("")) },
                "associatedRule": { "id": r.check_id },
            })
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "clerk-audit",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::Evidence;

    fn finding(repo: Option<&str>, details: Value) -> Finding {
        Finding {
            check_id: "CLERK-DEV-KEY-001".into(),
            severity: Severity::Blocker,
            pillar: "secure".into(),
            title: "t".into(),
            evidence: Evidence { repo: repo.map(str::to_owned), clerk: None, details },
            why: "w".into(),
            fix: "f".into(),
            fingerprint: "sha256:00".into(),
            first_seen_at: None,
            lifecycle: None,
        }
    }

    #[test]
    fn instance_findings_are_anchored_at_the_clerk_configuration_else_a_manifest() {
        use crate::audit::artifact::{KeyEnvironment, KeyKind, ReferenceContext};
        use crate::audit::checks::fixtures::{artifact, key};
        let mut later = key(KeyKind::Publishable, KeyEnvironment::Live, ReferenceContext::Production);
        later.file = "web/.env".into();
        let repo = artifact(vec![later, key(KeyKind::Publishable, KeyEnvironment::Live, ReferenceContext::Production)]);
        assert_eq!(anchor(Some(&repo), None), Some((".env.production".to_owned(), 3)));

        let dir = std::env::temp_dir().join(format!("clerk-audit-anchor-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(anchor(Some(&artifact(vec![])), Some(&dir)), None);
        std::fs::write(dir.join("go.mod"), "module x\n").unwrap();
        assert_eq!(anchor(Some(&artifact(vec![])), Some(&dir)), Some(("go.mod".to_owned(), 1)));
        assert_eq!(anchor(None, None), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rule_names_are_identifiers() {
        assert_eq!(rule_name("CLERK-DEV-KEY-001"), "ClerkDevKey001");
    }

    #[test]
    fn locations_come_from_the_details_only_with_repo_evidence() {
        let details = json!({"file": ".env.production", "lines": [3, 9]});
        assert_eq!(repo_locations(&finding(Some("x"), details.clone())), vec![(".env.production".to_owned(), 3)]);
        assert!(repo_locations(&finding(None, details)).is_empty());
        let handler = json!({"handler": {"file": "app/route.ts", "line": 4}, "endpoints": []});
        assert_eq!(repo_locations(&finding(Some("x"), handler)), vec![("app/route.ts".to_owned(), 4)]);
        let references = json!({"references": [{"file": "a", "line": 1}, {"file": "b", "line": 2}]});
        assert_eq!(repo_locations(&finding(Some("x"), references)).len(), 2);
    }

    #[test]
    fn one_rule_per_check_and_levels_from_severity() {
        let located = finding(Some("x"), json!({"file": "f", "line": 2}));
        let clerk_only = finding(None, json!({}));
        let log = render(&Evaluation { results: vec![], findings: vec![located, clerk_only.clone()] }, None);
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), checks::ALL.len());
        assert_eq!(run["results"][0]["level"], "error");
        assert_eq!(run["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"], 2);
        assert!(run["results"][1].get("locations").is_none());
        let anchored = render(&Evaluation { results: vec![], findings: vec![clerk_only] }, Some(("package.json", 1)));
        let location = &anchored["runs"][0]["results"][0]["locations"][0];
        assert_eq!(location["physicalLocation"]["artifactLocation"]["uri"], "package.json");
        assert!(location["message"]["text"].as_str().unwrap().contains("Clerk instance"));
        assert_eq!(level(Severity::Warning), "warning");
        assert_eq!(level(Severity::Info), "note");
    }
}
