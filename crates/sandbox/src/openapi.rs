//! Test support: the reference OpenAPI documents of `reference/` (shipped with this crate) turned into JSON Schemas
//! (draft 2020-12) that the `jsonschema` crate validates answers against.
//!
//! The Clerk specs are OpenAPI 3.0.3; the Svix subset says 3.1.0 but still uses the 3.0 keyword `nullable`.
//! Conversion, applied to every schema object (and only to schema objects: property names are left alone):
//! - `nullable: true` becomes `anyOf: [{"type": "null"}, <the schema without nullable>]` (so it also works
//!   beside `$ref`, `allOf` and `enum`, where adding `"null"` to `type` would not);
//! - `$ref: "#/components/schemas/X"` becomes `$ref: "#/$defs/X"`, and the referenced schemas (transitively)
//!   are put under `$defs` of the root;
//! - the 3.0 boolean forms of `exclusiveMinimum`/`exclusiveMaximum` become the numeric 2020-12 forms;
//! - `example`, `discriminator`, `xml`, `externalDocs` and `x-*` are dropped (annotations only).
//!
//! Formats (`date-time`, `uri`, ...) are validated; unknown formats (`int64`, `uint16`) are ignored.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The reference documents ship with this crate (`reference/README.md` says where they come from).
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/reference");

/// One reference OpenAPI document.
pub(crate) struct Spec {
    name: &'static str,
    doc: Value,
    /// The server path prefix the spec's paths are relative to (`/v1` for the Backend API).
    prefix: &'static str,
}

fn yaml_to_json(value: serde_yaml::Value) -> Value {
    match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        serde_yaml::Value::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        serde_yaml::Value::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn load_yaml(file: &str) -> Value {
    let path = format!("{REFERENCE}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    yaml_to_json(serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}")))
}

fn load_json(file: &str) -> Value {
    let path = format!("{REFERENCE}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// Clerk Backend API 2026-05-12 (paths relative to `/v1`).
pub(crate) fn bapi() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec { name: "bapi", doc: load_yaml("clerk-openapi/bapi-2026-05-12.yml"), prefix: "/v1" })
}

/// Clerk Frontend API 2026-05-12.
pub(crate) fn fapi() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec { name: "fapi", doc: load_yaml("clerk-openapi/fapi-2026-05-12.yml"), prefix: "" })
}

/// The Svix endpoint subset.
pub(crate) fn svix() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec { name: "svix", doc: load_json("svix-openapi/svix-endpoints-subset.json"), prefix: "" })
}

const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// Converts one OpenAPI schema object to JSON Schema 2020-12 (see the module documentation).
fn convert_schema(schema: &Value) -> Value {
    let Value::Object(object) = schema else { return schema.clone() };
    let mut out = Map::new();
    let mut nullable = false;
    for (key, value) in object {
        match key.as_str() {
            "nullable" => nullable = value.as_bool().unwrap_or(false),
            "example" | "discriminator" | "xml" | "externalDocs" => {}
            k if k.starts_with("x-") => {}
            "$ref" => {
                let reference = value.as_str().unwrap_or_default();
                let converted = match reference.strip_prefix(SCHEMA_REF_PREFIX) {
                    Some(name) => format!("#/$defs/{}", pointer_escape(name)),
                    None => panic!("unsupported $ref {reference}"),
                };
                out.insert(key.clone(), Value::String(converted));
            }
            "properties" | "patternProperties" | "$defs" => {
                let map = value.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), convert_schema(v))).collect());
                out.insert(key.clone(), map.map(Value::Object).unwrap_or_else(|| value.clone()));
            }
            "items" | "additionalProperties" | "not" | "contains" | "propertyNames" => {
                out.insert(key.clone(), convert_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                let items = value.as_array().map(|items| items.iter().map(convert_schema).collect());
                out.insert(key.clone(), items.map(Value::Array).unwrap_or_else(|| value.clone()));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    for (exclusive, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if let Some(Value::Bool(flag)) = out.get(exclusive).cloned() {
            out.remove(exclusive);
            if flag && let Some(limit) = out.remove(bound) {
                out.insert(exclusive.to_owned(), limit);
            }
        }
    }
    if nullable { json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] }) } else { Value::Object(out) }
}

fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Names of the component schemas a schema refers to, transitively.
fn referenced_schemas(spec: &Value, schema: &Value, found: &mut BTreeMap<String, Value>) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "$ref" {
                    if let Some(name) = value.as_str().and_then(|r| r.strip_prefix(SCHEMA_REF_PREFIX))
                        && !found.contains_key(name)
                    {
                        let target = spec["components"]["schemas"][name].clone();
                        assert!(!target.is_null(), "dangling $ref to {name}");
                        found.insert(name.to_owned(), target.clone());
                        referenced_schemas(spec, &target, found);
                    }
                } else {
                    referenced_schemas(spec, value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| referenced_schemas(spec, item, found)),
        _ => {}
    }
}

impl Spec {
    /// A self-contained JSON Schema for an OpenAPI schema of this document.
    pub(crate) fn json_schema(&self, schema: &Value) -> Value {
        let mut referenced = BTreeMap::new();
        referenced_schemas(&self.doc, schema, &mut referenced);
        let defs: Map<String, Value> = referenced.iter().map(|(name, s)| (name.clone(), convert_schema(s))).collect();
        let mut root = match convert_schema(schema) {
            Value::Object(object) => object,
            other => panic!("schema is not an object: {other}"),
        };
        root.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        root.insert("$defs".into(), Value::Object(defs));
        Value::Object(root)
    }

    /// `#/components/schemas/<name>` as a self-contained JSON Schema.
    pub(crate) fn component(&self, name: &str) -> Value {
        assert!(!self.doc["components"]["schemas"][name].is_null(), "{}: no component schema {name}", self.name);
        self.json_schema(&json!({ "$ref": format!("{SCHEMA_REF_PREFIX}{name}") }))
    }

    /// Whether the spec has the operation `method request_path`.
    pub(crate) fn response_schema_exists(&self, method: &str, request_path: &str) -> bool {
        let Some(path) = request_path.strip_prefix(self.prefix) else { return false };
        self.doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .any(|(template, item)| template_matches(template, path) && !item[method.to_ascii_lowercase()].is_null())
    }

    /// The OpenAPI schema the spec gives for answer `status` of `method request_path` (`None`: the spec does
    /// not list that status for the operation). `request_path` is the path as requested (e.g.
    /// `/v1/instance`, `/api/v1/app/app_x/endpoint`); templates like `{app_id}` are matched.
    pub(crate) fn response_schema(&self, method: &str, request_path: &str, status: u16) -> Option<Value> {
        let path =
            request_path.strip_prefix(self.prefix).unwrap_or_else(|| panic!("{request_path} outside {}", self.prefix));
        let paths = self.doc["paths"].as_object().expect("paths");
        let (_, item) = paths
            .iter()
            .find(|(template, _)| template_matches(template, path))
            .unwrap_or_else(|| panic!("{}: no path matches {path}", self.name));
        let operation = &item[method.to_ascii_lowercase()];
        assert!(!operation.is_null(), "{}: no {method} {path}", self.name);
        let mut response =
            operation["responses"].get(status.to_string()).or_else(|| operation["responses"].get("default"))?.clone();
        while let Some(reference) = response.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix("#/components/responses/").expect("response $ref");
            response = self.doc["components"]["responses"][name].clone();
        }
        Some(response["content"]["application/json"]["schema"].clone())
    }

    /// Validates an answer against the schema the spec lists for it; for a status the operation does not list
    /// (e.g. a 429 from a fault), against `fallback_component` (the API's error schema).
    pub(crate) fn check_response(
        &self,
        method: &str,
        request_path: &str,
        status: u16,
        body: &Value,
        fallback_component: &str,
    ) -> Result<(), String> {
        let schema = match self.response_schema(method, request_path, status) {
            Some(schema) => self.json_schema(&schema),
            None => self.component(fallback_component),
        };
        validate(&schema, body).map_err(|e| format!("{} {method} {request_path} -> {status}: {e}", self.name))
    }
}

/// Whether an OpenAPI path template (`/api/v1/app/{app_id}/endpoint`) matches a concrete path.
fn template_matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// Validates `instance` against a JSON Schema; the error lists every violation with its location.
pub(crate) fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("schema does not compile: {e}"))?;
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("at `{}`: {}", e.instance_path(), e)).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_handles_nullable_refs_and_exclusive_bounds() {
        let converted = convert_schema(&json!({
            "type": "object",
            "properties": {
                "example": { "type": "string", "example": "x" },
                "image": { "allOf": [{ "$ref": "#/components/schemas/Image" }], "nullable": true, "type": "object" },
                "n": { "type": "integer", "minimum": 0, "exclusiveMinimum": true },
            },
        }));
        assert_eq!(converted["properties"]["example"], json!({ "type": "string" }), "property names survive");
        assert_eq!(converted["properties"]["image"]["anyOf"][0], json!({ "type": "null" }));
        assert_eq!(converted["properties"]["image"]["anyOf"][1]["allOf"][0]["$ref"], json!("#/$defs/Image"));
        assert_eq!(converted["properties"]["n"], json!({ "type": "integer", "exclusiveMinimum": 0 }));
    }

    /// The validation is not vacuous: wrong shapes fail, nulls pass only where the spec allows them.
    #[test]
    fn validation_rejects_what_the_specs_forbid() {
        let bapi = bapi();
        let instance = bapi.component("Instance");
        let good = json!({"object":"instance","id":"ins_1","environment_type":"production","allowed_origins":null,"workspace_id":null});
        validate(&instance, &good).unwrap();
        assert!(validate(&instance, &json!({})).is_err(), "required fields");
        assert!(
            validate(
                &instance,
                &json!({"object":"instanc","id":"i","environment_type":"p","allowed_origins":[],"workspace_id":null})
            )
            .is_err(),
            "enum"
        );
        assert!(
            validate(&bapi.component("TotalCount"), &json!({"object":"total_count","total_count":"3"})).is_err(),
            "type"
        );
        assert!(
            validate(&bapi.component("TotalCount"), &json!({"object":"total_count","total_count":3,"x":1})).is_err(),
            "additionalProperties"
        );
        let domains = bapi.component("Domains");
        let domain = json!({"object":"domain","id":"d","name":"n","is_satellite":false,"frontend_api_url":"u","development_origin":"","cname_targets":null});
        validate(&domains, &json!({"data":[domain.clone()],"total_count":1})).unwrap();
        let mut bad = domain.clone();
        bad["cname_targets"] = json!([{ "host": "h", "value": "v" }]);
        assert!(validate(&domains, &json!({"data":[bad],"total_count":1})).is_err(), "nested required through $ref");
        let mut bad = domain;
        bad["is_satellite"] = Value::Null;
        assert!(validate(&domains, &json!({"data":[bad],"total_count":1})).is_err(), "null where not nullable");

        let svix = svix();
        let endpoint = json!({"id":"ep_1srOrx2ZWZBpBUvZwXKQmoEYga2","metadata":{},"url":"https://example.com/h","description":"","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"});
        let list = svix.component("ListResponse_EndpointOut_");
        validate(&list, &json!({"data":[endpoint.clone()],"iterator":null,"done":true})).unwrap();
        let mut bad = endpoint.clone();
        bad["id"] = json!("ep_short");
        assert!(validate(&list, &json!({"data":[bad],"iterator":null,"done":true})).is_err(), "pattern");
        let mut bad = endpoint.clone();
        bad["createdAt"] = json!("yesterday");
        assert!(validate(&list, &json!({"data":[bad],"iterator":null,"done":true})).is_err(), "date-time format");
        let mut bad = endpoint;
        bad["url"] = json!("not a uri");
        assert!(validate(&list, &json!({"data":[bad],"iterator":null,"done":true})).is_err(), "uri format");
        assert!(validate(&list, &json!({"data":[],"done":true})).is_err(), "iterator is required even when null");
        assert!(validate(&svix.component("EndpointSecretOut"), &json!({"key":"whsec_short"})).is_err());

        let environment = fapi().component("Client.Environment");
        assert!(validate(&environment, &json!({"unknown": true})).is_err(), "additionalProperties: false");
        assert!(validate(&environment, &json!({"user_settings": {}})).is_err(), "nested required");
    }

    #[test]
    fn response_schemas_come_from_the_operations() {
        assert!(bapi().response_schema("GET", "/v1/instance", 200).is_some());
        assert!(bapi().response_schema("GET", "/v1/instance", 429).is_none());
        assert!(bapi().response_schema("POST", "/v1/webhooks/svix_url", 400).is_some());
        assert!(svix().response_schema("GET", "/api/v1/app/app_x/endpoint/ep_y/secret", 200).is_some());
        assert!(fapi().response_schema("GET", "/v1/environment", 401).is_some());
    }
}
