//! The machine-readable contracts of `contracts/` hold true: the schemas are well-formed draft 2020-12 with
//! their own examples valid; the job schema and the worker's decoder accept and refuse alike; every
//! artifact the extractor writes for the fixture corpus validates; real events validate (the harness also
//! checks every event any test receives); the AsyncAPI document names what the worker declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clerk_audit::audit::artifact::{RepoArtifact, Verification};
use clerk_audit::configuration::Settings;
use clerk_audit::intake::broker::{self, ATTEMPT_HEADER, DETAIL_HEADER, REASON_HEADER};
use clerk_audit::intake::job;
use clerk_audit::outbox::events;
use clerk_audit_sandbox::Scenario;
use serde_json::{Value, json};

use crate::harness::contracts::{self, errors, parse, schema};
use crate::harness::{amqp_url, cleanup_broker, project, spawn_app};
use crate::scenarios::artifact_with_live_key;
use crate::webhooks::{env_secret, handler};

const SCHEMA_BASE: &str = "https://schemas.pulselight.dev/clerk-audit/";

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
}

/// Every `properties` entry anywhere in `schema` has a description.
fn undescribed_properties(schema: &Value, path: &str, missing: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                for (name, property) in properties {
                    if property.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                        missing.push(format!("{path}/properties/{name}"));
                    }
                }
            }
            for (key, value) in map {
                if key != "examples" {
                    undescribed_properties(value, &format!("{path}/{key}"), missing);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                undescribed_properties(item, &format!("{path}/{i}"), missing);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_is_draft_2020_12_with_id_title_descriptions_and_valid_examples() {
    let meta = jsonschema::draft202012::meta::validator();
    for contract in schema::SCHEMAS {
        let value = parse(*contract);
        let problems: Vec<String> = meta.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(problems.is_empty(), "{} is not a draft 2020-12 schema: {problems:?}", contract.file);
        assert_eq!(value["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", contract.file);
        assert_eq!(value["$id"], format!("{SCHEMA_BASE}{}", contract.file), "{}", contract.file);
        for keyword in ["title", "description"] {
            assert!(value[keyword].as_str().is_some_and(|s| !s.is_empty()), "{} has a {keyword}", contract.file);
        }
        let mut missing = Vec::new();
        undescribed_properties(&value, "", &mut missing);
        assert!(missing.is_empty(), "{}: properties without a description: {missing:?}", contract.file);
        for example in value["examples"].as_array().into_iter().flatten() {
            contracts::assert_valid(*contract, example);
        }
    }
    // The schemas consumers read as their contract carry at least one real example each.
    for contract in [schema::JOB, schema::ARTIFACT, schema::FINDING, schema::COMPLETED_EVENT, schema::FAILED_EVENT] {
        assert!(parse(contract)["examples"].as_array().is_some_and(|e| !e.is_empty()), "{} examples", contract.file);
    }
}

#[test]
fn every_file_of_the_contracts_folder_is_embedded_as_committed() {
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(contracts_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".json") || name.ends_with(".yaml") {
            on_disk.insert(name);
        }
    }
    let mut embedded: Vec<schema::Contract> = schema::SCHEMAS.to_vec();
    embedded.push(schema::ASYNCAPI);
    let names: BTreeSet<String> = embedded.iter().map(|c| c.file.to_owned()).collect();
    assert_eq!(names, on_disk, "contracts/ and cli::schema list the same files");
    for contract in embedded {
        assert_eq!(std::fs::read_to_string(contracts_dir().join(contract.file)).unwrap(), contract.text);
    }
}

fn valid_job() -> Value {
    let job = job::ScanJob {
        scan_id: uuid::Uuid::new_v4(),
        project_id: job::ProjectId::parse("prj_2abc").unwrap(),
        instance_name: job::InstanceName::parse("acme-prod").unwrap(),
        key_ref: uuid::Uuid::new_v4(),
        requested_at: chrono::Utc::now(),
        repo_scan_id: Some("rs_42".into()),
    };
    job.to_message()
}

fn decodes(value: &Value) -> Result<job::ScanJob, job::PoisonReason> {
    job::decode(value.to_string().as_bytes(), 65536)
}

#[test]
fn the_job_schema_and_the_decoder_accept_and_refuse_alike() {
    let accepted: Vec<(&str, Value)> = vec![
        ("as enqueued", valid_job()),
        ("minor version", {
            let mut v = valid_job();
            v["schema"] = json!("clerk-scan-job/v1.3");
            v
        }),
        ("unknown field", {
            let mut v = valid_job();
            v["priority"] = json!({"nested": [1, 2]});
            v
        }),
        ("no repo scan", {
            let mut v = valid_job();
            v.as_object_mut().unwrap().remove("repo_scan_id");
            v
        }),
        ("null repo scan", {
            let mut v = valid_job();
            v["repo_scan_id"] = Value::Null;
            v
        }),
        ("offset time", {
            let mut v = valid_job();
            v["requested_at"] = json!("2026-11-26T11:00:00.250+01:00");
            v
        }),
    ];
    for (case, value) in &accepted {
        assert_eq!(errors(schema::JOB, value), Vec::<String>::new(), "{case}: schema");
        decodes(value).unwrap_or_else(|e| panic!("{case}: decoder: {e}"));
    }

    let mut refused: Vec<(String, Value)> = Vec::new();
    for field in ["schema", "scan_id", "project_id", "instance_name", "key_ref", "requested_at"] {
        let mut missing = valid_job();
        missing.as_object_mut().unwrap().remove(field);
        refused.push((format!("missing {field}"), missing));
        let mut null = valid_job();
        null[field] = Value::Null;
        refused.push((format!("null {field}"), null));
    }
    for (field, bad) in [
        ("scan_id", json!("not-a-uuid")),
        ("scan_id", json!("8f0c7c1e-1a7b-4c43-9d7e-2f1d3c1f9a1")),
        ("key_ref", json!(12)),
        ("key_ref", json!("1b4e28ba-2fa1-11d2-883f-0016d3cca42z")),
        ("schema", json!("clerk-scan-job/v2")),
        ("schema", json!("clerk-scan-job/v10")),
        ("schema", json!("other/v1")),
        ("schema", json!("clerk-scan-job")),
        ("project_id", json!("prj 2")),
        ("project_id", json!("")),
        ("project_id", json!("p".repeat(129))),
        ("instance_name", json!("acme/prod")),
        ("requested_at", json!("yesterday")),
        ("repo_scan_id", json!("rs 42")),
        ("repo_scan_id", json!(42)),
    ] {
        let mut value = valid_job();
        value[field] = bad.clone();
        refused.push((format!("{field} = {bad}"), value));
    }
    refused.push(("not an object".into(), json!(["clerk-scan-job/v1"])));
    for (case, value) in &refused {
        assert!(!errors(schema::JOB, value).is_empty(), "{case}: the schema accepts {value:#}");
        assert!(decodes(value).is_err(), "{case}: the decoder accepts {value:#}");
    }
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/repo-scan/tests/fixtures/repos");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// `schema` with `additionalProperties: false` on every object that lists its properties: a document
/// valid under it uses only properties the schema describes.
fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), if k == "examples" { v.clone() } else { closed(v) })).collect();
            if map.contains_key("properties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(closed).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_artifact_of_the_fixture_corpus_validates() {
    let dirs = fixture_dirs();
    // Every property the extractor writes is described by the schema (additions included), not merely
    // tolerated as an unknown property.
    let described =
        jsonschema::draft202012::new(&closed(&parse(schema::ARTIFACT))).expect("the closed schema compiles");
    let mut seen: BTreeSet<String> = BTreeSet::new();
    assert!(dirs.len() >= 20, "the corpus is there: {dirs:?}");
    let options = clerk_repo_scan::ScanOptions {
        scanned_at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ..clerk_repo_scan::ScanOptions::default()
    };
    let (mut keys, mut handlers) = (0, 0);
    for dir in dirs {
        let artifact = clerk_repo_scan::scan(&dir, &options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        keys += artifact.key_references.len();
        handlers += artifact.webhook_handlers.len();
        let value = serde_json::to_value(&artifact).unwrap();
        let problems = errors(schema::ARTIFACT, &value);
        assert!(problems.is_empty(), "{}: {problems:?}\n{value:#}", dir.display());
        let undescribed: Vec<String> = described.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(undescribed.is_empty(), "{}: undescribed properties {undescribed:?}", dir.display());
        collect_keys(&value, "", &mut seen);
        // What validates, the worker reads.
        RepoArtifact::from_json(value).unwrap();
    }
    assert!(keys > 0 && handlers > 0, "the corpus exercises both lists");
    // The corpus exercises every later addition to v1.
    for path in [
        "/committed_secrets/kind",
        "/webhook_handlers/registration/file",
        "/webhook_handlers/reserialized_body",
        "/webhook_handlers/acks_failed_verification",
        "/webhook_handlers/secret_source/unresolved",
    ] {
        assert!(seen.contains(path), "no fixture produces {path}: {seen:?}");
    }
    // The artifact the integration tests store validates too.
    contracts::assert_valid(schema::ARTIFACT, &serde_json::to_value(artifact_with_live_key()).unwrap());
}

/// Every object key path of `value` (array indices left out).
fn collect_keys(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{path}/{k}");
                collect_keys(v, &p, out);
                out.insert(p);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_keys(v, path, out)),
        _ => {}
    }
}

#[test]
fn the_closed_artifact_schema_refuses_an_undescribed_property() {
    let described =
        jsonschema::draft202012::new(&closed(&parse(schema::ARTIFACT))).expect("the closed schema compiles");
    for example in parse(schema::ARTIFACT)["examples"].as_array().unwrap() {
        assert!(described.is_valid(example), "{example:#}");
        let mut extra = example.clone();
        extra["webhook_handlers"][0]["verified_twice"] = json!(true);
        assert!(!described.is_valid(&extra), "an undescribed handler property passes");
    }
}

#[test]
fn the_artifact_schema_and_the_worker_refuse_alike() {
    let example = parse(schema::ARTIFACT)["examples"][0].clone();
    RepoArtifact::from_json(example.clone()).unwrap();
    let mut cases = Vec::new();
    let mut other_version = example.clone();
    other_version["schema"] = json!("clerk-repo-artifact/v2");
    cases.push(("schema v2", other_version));
    let mut verification = example.clone();
    verification["webhook_handlers"][0]["verification"] = json!("hmac");
    cases.push(("unknown verification", verification));
    let mut kind = example.clone();
    kind["key_references"][0]["kind"] = json!("restricted");
    cases.push(("unknown key kind", kind));
    let mut line = example.clone();
    line["key_references"][0]["line"] = json!("3");
    cases.push(("line as text", line));
    let mut file = example;
    file["webhook_handlers"][0].as_object_mut().unwrap().remove("file");
    cases.push(("handler without file", file));
    // The later additions are checked alike.
    let addition = parse(schema::ARTIFACT)["examples"][1].clone();
    RepoArtifact::from_json(addition.clone()).unwrap();
    let mut flag = addition.clone();
    flag["webhook_handlers"][0]["reserialized_body"] = json!("yes");
    cases.push(("reserialized_body as text", flag));
    let mut registration = addition.clone();
    registration["webhook_handlers"][0]["registration"].as_object_mut().unwrap().remove("line");
    cases.push(("registration without line", registration));
    let mut committed = addition;
    committed["committed_secrets"][0]["kind"] = json!("password");
    cases.push(("unknown committed secret kind", committed));
    for (case, value) in cases {
        assert!(!errors(schema::ARTIFACT, &value).is_empty(), "{case}: the schema accepts it");
        assert!(RepoArtifact::from_json(value).is_err(), "{case}: the worker reads it");
    }
}

/// Runs a completed scan with findings and a failed one; prints both events (`-- --nocapture`): the
/// examples in the schemas come from this output.
#[tokio::test]
async fn events_of_real_scans_validate() {
    let mut app = spawn_app().await;
    let project = project();
    let scenario = Scenario::ProductionOptionalMfa;
    let key_ref = app.connect_scenario(&project, scenario).await;
    // A live key and a webhook handler that verifies nothing: findings with repo and Clerk evidence.
    let mut artifact = artifact_with_live_key();
    artifact.webhook_handlers = vec![handler(Verification::None, env_secret())];
    app.store_artifact(&project, "rs_1", &artifact).await;
    let instance = app.sandbox.instance(scenario).name.clone();
    let job = app.job(&project, &instance, key_ref);
    app.enqueue(&job).await;
    // `event_for` validates every event it receives against the schema of its routing key.
    let (routing_key, completed) = app.event_for(job.scan_id).await;
    assert_eq!(routing_key, events::COMPLETED_ROUTING_KEY);
    let findings = completed["data"]["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "the scenario has findings: {completed:#}");
    for finding in findings {
        contracts::assert_valid(schema::FINDING, finding);
    }
    contracts::assert_valid(schema::COMPLETED_DATA, &completed["data"]);
    println!("{}", serde_json::to_string_pretty(&completed).unwrap());

    let missing = app.job(&project, &instance, uuid::Uuid::new_v4());
    app.enqueue(&missing).await;
    let (routing_key, failed) = app.event_for(missing.scan_id).await;
    assert_eq!(routing_key, events::FAILED_ROUTING_KEY);
    contracts::assert_valid(schema::FAILED_DATA, &failed["data"]);
    println!("{}", serde_json::to_string_pretty(&failed).unwrap());

    // The schemas are not looser than the events: a completed event without findings' `first_seen_at`,
    // or with the failed type, does not validate.
    let mut unseen = completed.clone();
    unseen["data"]["findings"][0].as_object_mut().unwrap().remove("first_seen_at");
    assert!(!errors(schema::COMPLETED_EVENT, &unseen).is_empty());
    let mut mistyped = completed;
    mistyped["type"] = json!(events::FAILED_TYPE);
    assert!(!errors(schema::COMPLETED_EVENT, &mistyped).is_empty());
    app.stop().await;
}

/// The worker's settings as the defaults of `config/` give them (no test overrides).
fn default_settings() -> Settings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_from(&dir, "local").expect("config loads")
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} is text in the document"))
}

#[test]
fn the_asyncapi_document_names_what_the_worker_declares() {
    let document = contracts::asyncapi();
    assert_eq!(document["asyncapi"], "3.0.0");
    let settings = default_settings();
    let (amqp, worker) = (&settings.amqp, &settings.worker);

    let channels = document["channels"].as_object().expect("channels");
    let (mut exchanges, mut queues, mut routing_keys) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (id, channel) in channels {
        let binding = &channel["bindings"]["amqp"];
        match binding["is"].as_str() {
            Some("routingKey") => {
                exchanges.insert(text(binding, "/exchange/name").to_owned());
                assert_eq!(binding["exchange"]["type"], "topic", "{id}");
                assert_eq!(binding["exchange"]["durable"], true, "{id}");
                routing_keys.insert(text(channel, "/address").to_owned());
            }
            Some("queue") => {
                let name = text(binding, "/queue/name");
                assert_eq!(channel["address"], name, "{id}: a queue channel's address is the queue");
                assert_eq!(binding["queue"]["durable"], true, "{id}");
                queues.insert(name.to_owned());
            }
            other => panic!("{id}: amqp binding `is` {other:?}"),
        }
    }
    let expected: BTreeSet<String> =
        [&amqp.jobs_exchange, &amqp.dead_letter_exchange, &amqp.findings_exchange].into_iter().cloned().collect();
    assert_eq!(exchanges, expected, "exchanges");

    // The delay queues' name template, rendered for a tier, is the worker's name for that tier.
    let delay_template = &channels["delay"]["address"].as_str().expect("delay address").to_owned();
    let tier = worker.retry_delay_secs;
    assert_eq!(delay_template.replace("{delaySecs}", &tier.to_string()), broker::delay_queue_name(amqp, tier));
    let expected: BTreeSet<String> =
        [amqp.jobs_queue.clone(), amqp.dead_letter_queue.clone(), delay_template.clone()].into_iter().collect();
    assert_eq!(queues, expected, "queues");

    // Routing keys: the jobs key, the two event keys, and the dead-letter exchange's pass-through key.
    let expected: BTreeSet<String> = [
        amqp.jobs_routing_key.as_str(),
        events::COMPLETED_ROUTING_KEY,
        events::FAILED_ROUTING_KEY,
        text(&document, "/channels/deadLetters/address"),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(routing_keys, expected, "routing keys");
    assert_eq!(channels["scanRequests"]["address"], amqp.jobs_routing_key.as_str());
    assert_eq!(channels["scanRequests"]["bindings"]["amqp"]["exchange"]["name"], amqp.jobs_exchange.as_str());
    assert_eq!(channels["deadLetters"]["bindings"]["amqp"]["exchange"]["name"], amqp.dead_letter_exchange.as_str());
    for (channel, key) in
        [("auditCompleted", events::COMPLETED_ROUTING_KEY), ("auditFailed", events::FAILED_ROUTING_KEY)]
    {
        assert_eq!(channels[channel]["address"], key);
        assert_eq!(channels[channel]["bindings"]["amqp"]["exchange"]["name"], amqp.findings_exchange.as_str());
    }

    // Queue arguments and bindings as `declare_topology` and `declare_delay_queue` set them.
    let jobs = &channels["jobs"];
    assert_eq!(jobs["address"], amqp.jobs_queue.as_str());
    assert_eq!(
        jobs["x-queue-arguments"],
        json!({"x-queue-type": "quorum", "x-dead-letter-exchange": amqp.dead_letter_exchange,
               "x-delivery-limit": amqp.delivery_limit})
    );
    assert_eq!(jobs["x-bindings"], json!([{"exchange": amqp.jobs_exchange, "routingKey": amqp.jobs_routing_key}]));
    let dead = &channels["deadLetterQueue"];
    assert_eq!(dead["address"], amqp.dead_letter_queue.as_str());
    assert_eq!(dead["x-queue-arguments"], json!({"x-queue-type": "quorum"}));
    assert_eq!(dead["x-bindings"], json!([{"exchange": amqp.dead_letter_exchange, "routingKey": "#"}]));
    let delay = &channels["delay"]["x-queue-arguments"];
    assert_eq!(delay["x-dead-letter-exchange"], "");
    assert_eq!(delay["x-dead-letter-routing-key"], amqp.jobs_queue.as_str());

    // Headers and content types.
    let messages = &document["components"]["messages"];
    for header in [REASON_HEADER, DETAIL_HEADER, ATTEMPT_HEADER, "traceparent"] {
        assert!(messages["deadLetter"]["headers"]["properties"].get(header).is_some(), "dead letter {header}");
    }
    for header in [ATTEMPT_HEADER, "traceparent"] {
        assert!(messages["scanJob"]["headers"]["properties"].get(header).is_some(), "job {header}");
    }
    assert_eq!(messages["scanJob"]["contentType"], "application/json");
    assert_eq!(text(messages, "/scanJob/payload/schema/$ref"), format!("./{}", schema::JOB.file));
    for (message, event_type, contract, data) in [
        ("auditCompleted", events::COMPLETED_TYPE, schema::COMPLETED_EVENT, schema::COMPLETED_DATA),
        ("auditFailed", events::FAILED_TYPE, schema::FAILED_EVENT, schema::FAILED_DATA),
    ] {
        let message = &messages[message];
        assert_eq!(message["contentType"], events::CONTENT_TYPE);
        assert_eq!(message["payload"]["schemaFormat"], "application/schema+json;version=draft-2020-12");
        assert_eq!(text(message, "/payload/schema/$ref"), format!("./{}", contract.file));
        assert_eq!(message["bindings"]["amqp"]["messageType"], event_type);
        assert_eq!(message["x-cloudevents"]["type"], event_type);
        assert_eq!(message["x-cloudevents"]["mode"], "structured");
        assert_eq!(text(message, "/x-cloudevents/dataschema"), format!("./{}", data.file));
        assert_eq!(message["x-cloudevents"]["source"], settings.events.source.as_str());
        assert_eq!(parse(contract)["properties"]["type"]["const"], event_type);
    }

    // Every file the document references is in the folder.
    let mut references = Vec::new();
    collect_refs(&document, &mut references);
    for reference in references.iter().filter(|r| !r.starts_with('#')) {
        let file = reference.trim_start_matches("./");
        assert!(contracts_dir().join(file).is_file(), "{reference} exists");
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_refs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

/// The queue arguments of the document as AMQP values, the queue's name template rendered for `secs`.
fn documented_arguments(channel: &Value, secs: u64) -> lapin::types::FieldTable {
    let mut table = lapin::types::FieldTable::default();
    for (name, value) in channel["x-queue-arguments"].as_object().expect("x-queue-arguments") {
        let value = match value {
            Value::Number(n) => lapin::types::AMQPValue::LongLongInt(n.as_i64().expect("an integer argument")),
            Value::String(s) if s == "{delaySecs} * 1000" => lapin::types::AMQPValue::LongLongInt(secs as i64 * 1000),
            Value::String(s) => broker::text_value(s),
            other => panic!("argument {name} = {other}"),
        };
        table.insert(name.as_str().into(), value);
    }
    table
}

/// Declares `queue` again with `arguments`: the broker refuses (and closes the channel) when they differ from
/// the arguments the queue was declared with.
async fn redeclare(connection: &lapin::Connection, queue: &str, arguments: lapin::types::FieldTable) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = lapin::options::QueueDeclareOptions { durable: true, ..Default::default() };
    let equivalent = channel.queue_declare(queue.into(), options, arguments).await.is_ok();
    let _ = channel.close(200, "".into()).await;
    equivalent
}

/// The broker itself compares the documented queue arguments with those `declare_topology` and
/// `declare_delay_queue` declare (under this test's own names): a redeclaration with different arguments fails.
#[tokio::test]
async fn the_broker_agrees_with_the_documented_queue_arguments() {
    let document = contracts::asyncapi();
    let defaults = default_settings();
    let mut settings = defaults.clone();
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    settings.amqp.url = secrecy::SecretString::from(amqp_url());
    // The document's names with this test's prefix, so the shared broker's real queues are never touched.
    let rename = |name: &str| format!("{prefix}.{name}");
    let amqp = &mut settings.amqp;
    for name in [
        &mut amqp.jobs_exchange,
        &mut amqp.jobs_queue,
        &mut amqp.retry_queue,
        &mut amqp.dead_letter_exchange,
        &mut amqp.dead_letter_queue,
        &mut amqp.findings_exchange,
    ] {
        *name = rename(name);
    }
    let connection = broker::connect(&settings.amqp, "clerk-audit contracts test").await.expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    broker::declare_topology(&channel, &settings.amqp, &settings.worker).await.unwrap();
    let secs = settings.worker.retry_delay_secs * 2;
    let delay_queue = broker::declare_delay_queue(&channel, &settings.amqp, secs).await.unwrap();
    let _ = channel.close(200, "".into()).await;

    // The documented arguments name the default exchanges and queues; here they carry the prefix.
    let default_names = [&defaults.amqp.jobs_queue, &defaults.amqp.dead_letter_exchange];
    let prefixed = |mut table: lapin::types::FieldTable| {
        for (name, value) in table.inner().clone() {
            if let lapin::types::AMQPValue::LongString(text) = &value {
                let text = String::from_utf8_lossy(text.as_bytes()).into_owned();
                if default_names.contains(&&text) {
                    table.insert(name, broker::text_value(&rename(&text)));
                }
            }
        }
        table
    };
    let channels = &document["channels"];
    for (channel, queue) in [
        ("jobs", settings.amqp.jobs_queue.clone()),
        ("deadLetterQueue", settings.amqp.dead_letter_queue.clone()),
        ("delay", delay_queue.clone()),
    ] {
        let documented = prefixed(documented_arguments(&channels[channel], secs));
        assert!(redeclare(&connection, &queue, documented.clone()).await, "{channel}: {documented:?}");
    }
    // A control: an argument off by one is refused, so the comparison above is real.
    let mut wrong = prefixed(documented_arguments(&channels["jobs"], secs));
    wrong.insert(
        "x-delivery-limit".into(),
        lapin::types::AMQPValue::LongLongInt(i64::from(defaults.amqp.delivery_limit) + 1),
    );
    assert!(!redeclare(&connection, &settings.amqp.jobs_queue, wrong).await, "a different delivery limit is refused");
    let mut wrong = prefixed(documented_arguments(&channels["delay"], secs));
    wrong.insert("x-message-ttl".into(), lapin::types::AMQPValue::LongLongInt(secs as i64 * 1000 + 1));
    assert!(!redeclare(&connection, &delay_queue, wrong).await, "a different TTL is refused");

    // Deletes every delay tier from `retry_delay_secs` up, the one declared here included.
    cleanup_broker(&connection, &settings).await;
}

/// Every code the worker can put in the dead-letter reason header is documented, and nothing else is.
#[test]
fn the_dead_letter_reason_codes_are_the_documented_ones() {
    use clerk_audit::error::FailureReason;
    use clerk_audit::intake::job::PoisonReason;
    // Exhaustive matches: a new variant fails to compile here until it is documented.
    let poison = [
        PoisonReason::Oversized { size: 2, limit: 1 },
        PoisonReason::MalformedJson(String::new()),
        PoisonReason::UnknownSchema(String::new()),
        PoisonReason::MissingField("scan_id"),
        PoisonReason::InvalidField { field: "scan_id", problem: String::new() },
    ];
    for reason in &poison {
        match reason {
            PoisonReason::Oversized { .. }
            | PoisonReason::MalformedJson(_)
            | PoisonReason::UnknownSchema(_)
            | PoisonReason::MissingField(_)
            | PoisonReason::InvalidField { .. } => {}
        }
    }
    let failures = [
        FailureReason::CredentialNotFound,
        FailureReason::CredentialRevoked,
        FailureReason::CredentialUndecryptable,
        FailureReason::ClerkKeyRejected,
        FailureReason::ClerkUnavailable,
        FailureReason::Internal,
    ];
    for reason in failures {
        match reason {
            FailureReason::CredentialNotFound
            | FailureReason::CredentialRevoked
            | FailureReason::CredentialUndecryptable
            | FailureReason::ClerkKeyRejected
            | FailureReason::ClerkUnavailable
            | FailureReason::Internal => {}
        }
    }
    let codes: BTreeSet<String> =
        poison.iter().map(PoisonReason::code).chain(failures.iter().map(|r| r.code())).map(str::to_owned).collect();
    let documented: BTreeSet<String> = contracts::dead_letter_reasons().into_iter().collect();
    assert_eq!(codes, documented);
    // The failed event's reason codes are the same failure codes; its schema lists them as examples.
    let examples = &parse(schema::FAILED_DATA)["properties"]["reason"]["examples"];
    let examples: BTreeSet<String> =
        examples.as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
    assert_eq!(examples, failures.iter().map(|r| r.code().to_owned()).collect::<BTreeSet<_>>());
}
