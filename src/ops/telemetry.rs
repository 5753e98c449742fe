//! Logs and traces through `tracing`.
//!
//! **Logs**: JSON lines in production (`telemetry.log_format = "json"`), readable text locally; the level
//! comes from `RUST_LOG` (default `info`). Each JSON line carries the fields of every span it was logged
//! in, flattened to the top level, so every line of a job has `scan_id` and `project_id` (and `trace_id`),
//! whatever `RUST_LOG` says: the crate's INFO spans are always enabled for the log layer, only events are
//! filtered. The one DEBUG span, `outbound_call` (several per job), reaches the log layer only when
//! `RUST_LOG` enables the crate's DEBUG lines, which are the only lines logged inside it: formatting its
//! fields for every call was a visible share of a scan's CPU. Nothing that holds a secret implements
//! `Display`, and the secret key's `Debug` is redacted.
//!
//! **Traces**: an OpenTelemetry layer turns the crate's spans (`job`, `kms.decrypt`, `outbound_call`,
//! `persist`, `publish`; INFO and DEBUG) into OpenTelemetry spans, and no event below INFO.
//! [`continue_trace`] makes a job span the child of the job message's W3C `traceparent`; [`traceparent`]
//! renders the current span's context for the findings event. Spans are exported over OTLP (HTTP/protobuf)
//! when `telemetry.otlp_endpoint` is set; otherwise only the INFO spans are built, for their ids (so log lines
//! carry `trace_id` and events a `traceparent`), and nothing is exported ([`TracedSpans`]).

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::configuration::{LogFormat, TelemetrySettings};

/// The OpenTelemetry service name.
pub const SERVICE_NAME: &str = "clerk-audit";
/// The `tracing` target prefix of this crate's spans and events.
const CRATE_TARGET: &str = "clerk_audit";

/// Keeps the tracer provider; dropping it flushes and stops the exporter.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The tracer provider: parent-based sampling (a job inherits its producer's decision, a job without a
/// `traceparent` is sampled), batch OTLP export when an endpoint is configured.
pub fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource);
    if !settings.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::{Protocol, WithExportConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(crate::configuration::otlp_traces_url(&settings.otlp_endpoint)?)
            .build()
            .context("building the OTLP span exporter (telemetry.otlp_endpoint)")?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Which of the crate's spans the OpenTelemetry layer turns into OpenTelemetry spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracedSpans {
    /// INFO and DEBUG (`outbound_call`): the spans are exported.
    All,
    /// INFO only: nothing is exported, and a span is built only for its ids (a job's `trace_id` in its log
    /// lines, the event's `traceparent`, both read from the job's spans). Building the six to eight
    /// `outbound_call` spans of every job for a provider that drops them was wasted work.
    IdsOnly,
}

/// Builds the subscriber: the log layer (`format`, level from `RUST_LOG`, else `default_filter`) and the
/// OpenTelemetry layer, on a provider that exports nothing (spans still get ids, so job lines carry
/// `trace_id` and events a `traceparent`).
pub fn subscriber<W>(format: LogFormat, default_filter: &str, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber_tracing(format, default_filter, writer, &SdkTracerProvider::builder().build(), TracedSpans::IdsOnly)
}

/// [`subscriber`] with the OpenTelemetry layer on `provider` (the exporting one of
/// [`tracer_provider`], or a test's in-memory one), building every span of the crate.
pub fn subscriber_with_provider<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
    provider: &SdkTracerProvider,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber_tracing(format, default_filter, writer, provider, TracedSpans::All)
}

/// [`subscriber_with_provider`], building the spans `traced` names.
pub fn subscriber_tracing<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
    provider: &SdkTracerProvider,
    traced: TracedSpans,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // The crate's INFO spans stay enabled for the log layer at any level, so a WARN line in a job still
    // names its scan.
    let log_filter = env_filter.or(filter_fn(|metadata| {
        metadata.is_span() && *metadata.level() <= Level::INFO && metadata.target().starts_with(CRATE_TARGET)
    }));
    let log_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(SpanFieldsJson)
            .event_format(FlatJson)
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
        // Colours only for a person at a terminal: the process logs to stderr, and escape codes in a file or a
        // collector's pipe are noise to whoever reads it.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
    };
    // Busy/idle times and thread names are off: they cost two clock reads at every poll of an instrumented
    // future (many per job), and a work-stealing runtime's thread says nothing about a span. Context
    // activation is off too: it clones the span's OpenTelemetry context into a thread-local at every poll,
    // for instrumentation that reads `opentelemetry::Context::current()`, and nothing here does (a span's
    // context is read from the span itself, see [`traceparent`]; parents come from the tracing tree).
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false)
        .with_filter(filter_fn(move |metadata| {
            let lowest = match traced {
                TracedSpans::All if metadata.is_span() => Level::DEBUG,
                _ => Level::INFO,
            };
            *metadata.level() <= lowest && metadata.target().starts_with(CRATE_TARGET)
        }));
    Box::new(tracing_subscriber::registry().with(log_layer).with(otel_layer))
}

/// Installs the process-wide subscriber writing to stderr (stdout is kept for command output), logs
/// only: no span is exported.
pub fn init(format: LogFormat) {
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(format, "info", std::io::stderr));
}

/// Installs the process-wide subscriber writing to stderr, exporting spans when
/// `telemetry.otlp_endpoint` is set. Keep the answer alive until exit: dropping it flushes the exporter.
pub fn init_with_traces(settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let provider = tracer_provider(settings)?;
    let traced = if settings.otlp_endpoint.is_empty() { TracedSpans::IdsOnly } else { TracedSpans::All };
    let subscriber = subscriber_tracing(settings.log_format, "info", std::io::stderr, &provider, traced);
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(Telemetry { provider })
}

/// Makes `span` (not yet entered) a child of the W3C `traceparent` of the message that caused it. A
/// missing or malformed `traceparent` leaves `span` the root of a new trace. When `span` declares a
/// `trace_id` field, it is recorded, so log lines name the trace.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.trim().to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    if span.has_field("trace_id")
        && let Some(trace_id) = self::traceparent(span).as_deref().and_then(trace_id_of)
    {
        span.record("trace_id", trace_id);
    }
}

/// The W3C `traceparent` of `span`: its trace id and its own span id. `None` when no OpenTelemetry layer
/// is installed (or the span is disabled).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context.is_valid().then(|| {
        format!("00-{}-{}-{:02x}", span_context.trace_id(), span_context.span_id(), span_context.trace_flags().to_u8())
    })
}

/// The trace id of a `traceparent`, when it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()) && trace_id != "0".repeat(32))
        .then_some(trace_id)
}

/// The `traceparent` for an event created inside the current span: the current span's own context,
/// else (no OpenTelemetry layer) the one the job came with.
pub fn current_traceparent_or(fallback: Option<&str>) -> Option<String> {
    traceparent(&tracing::Span::current()).or_else(|| fallback.map(str::to_owned))
}

/// JSON lines with the fields of every enclosing span flattened to the top level (inner spans win, the
/// event's own fields win over spans), plus `span` (the innermost span's name), `spans` (the path,
/// outermost first, joined by `>`). A job's lines also carry `trace_id` (a field of the job span).
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            for span in scope.from_root() {
                names.push(span.name());
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str())
                {
                    line.extend(fields);
                }
            }
            if let Some(name) = names.last() {
                line.insert("span".into(), Value::String((*name).to_owned()));
                line.insert("spans".into(), Value::String(names.join(">")));
            }
        }
        let mut visitor = JsonFieldVisitor(Map::new());
        event.record(&mut visitor);
        line.extend(visitor.0);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The fields of a span as the text of a JSON object, which [`FlatJson`] reads back for each line. A field
/// recorded after the span was created (a job's `trace_id`, a call's `status`) is appended to the text:
/// tracing-subscriber's `JsonFields` instead parses the whole object and writes it again for every such
/// record, about 1% of a scan's instructions for the two a job makes. A field recorded twice then appears
/// twice in the text; [`FlatJson`] reads it into a map, where the later value wins, as it did before.
pub struct SpanFieldsJson;

impl<'writer> FormatFields<'writer> for SpanFieldsJson {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        write!(writer, "{{{}}}", JsonMembers::of(|visitor| fields.record(visitor)))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let added = JsonMembers::of(|visitor| fields.record(visitor));
        if added.is_empty() {
            return Ok(());
        }
        // `{"a":1}` + `"b":2` -> `{"a":1,"b":2}`; an empty or missing object is replaced.
        if current.fields.len() > 2 && current.fields.ends_with('}') {
            current.fields.pop();
            current.fields.push(',');
        } else {
            current.fields.clear();
            current.fields.push('{');
        }
        current.fields.push_str(&added);
        current.fields.push('}');
        Ok(())
    }
}

/// Renders each field of a span or event as JSON, the one place that decides how a field type looks in
/// a log line (numbers and booleans as such, anything else as a string), and hands it to `S`.
struct JsonFieldVisitor<S>(S);

/// Where [`JsonFieldVisitor`] puts each rendered field.
trait JsonSink {
    fn put<T: serde::Serialize + ?Sized>(&mut self, name: &str, value: &T);
}

impl<S: JsonSink> Visit for JsonFieldVisitor<S> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.put(field.name(), &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.put(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.put(field.name(), &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.put(field.name(), &value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.put(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.put(field.name(), &value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.put(field.name(), &value.to_string());
    }
}

/// An event's fields, merged over its spans' in [`FlatJson`].
impl JsonSink for Map<String, Value> {
    fn put<T: serde::Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.insert(name.to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
    }
}

/// A span's fields as the members of a JSON object, `"name":value,...` without the braces.
#[derive(Default)]
struct JsonMembers(Vec<u8>);

impl JsonMembers {
    fn of(fields: impl FnOnce(&mut JsonFieldVisitor<JsonMembers>)) -> String {
        let mut visitor = JsonFieldVisitor(JsonMembers::default());
        fields(&mut visitor);
        // serde_json writes UTF-8.
        String::from_utf8(visitor.0.0).unwrap_or_default()
    }
}

impl JsonSink for JsonMembers {
    fn put<T: serde::Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        if !self.0.is_empty() {
            self.0.push(b',');
        }
        // A name and a plain value into a Vec: serialization cannot fail.
        let _ = serde_json::to_writer(&mut self.0, name);
        self.0.push(b':');
        let _ = serde_json::to_writer(&mut self.0, value);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects written lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Lines {
        fn json(&self) -> Vec<Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
                .collect()
        }
    }

    #[test]
    fn without_export_only_the_info_spans_are_built_and_they_still_carry_ids() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        let built = |traced: TracedSpans| {
            let spans = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
            let subscriber =
                subscriber_tracing(LogFormat::Json, "clerk_audit=info", Lines::default(), &provider, traced);
            let job_traceparent = tracing::subscriber::with_default(subscriber, || {
                let job = tracing::info_span!("job", trace_id = tracing::field::Empty);
                let _job = job.enter();
                tracing::debug_span!("outbound_call", endpoint = "backend.instance").in_scope(|| {});
                traceparent(&job)
            });
            let mut names: Vec<String> =
                spans.get_finished_spans().unwrap().into_iter().map(|span| span.name.into_owned()).collect();
            names.sort();
            (names, job_traceparent)
        };
        let (names, job_traceparent) = built(TracedSpans::IdsOnly);
        assert_eq!(names, ["job"], "a DEBUG span was built for a provider that exports nothing");
        assert!(job_traceparent.is_some(), "the job span lost its ids");
        let (names, _) = built(TracedSpans::All);
        assert_eq!(names, ["job", "outbound_call"]);
    }

    #[test]
    fn entering_a_span_does_not_activate_its_opentelemetry_context() {
        use opentelemetry::trace::TraceContextExt as _;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Json, "clerk_audit=info", Lines::default(), &provider);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job", trace_id = tracing::field::Empty);
            let _job = job.enter();
            // The span has its context, read from the span itself ...
            assert!(traceparent(&job).is_some());
            // ... and entering it (at every poll of a job) did not copy that context into the thread-local
            // one, which nothing here reads.
            assert!(!opentelemetry::Context::current().has_active_span());
        });
    }

    #[test]
    fn json_lines_carry_span_fields_and_trace_id() {
        let lines = Lines::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Json, "clerk_audit=debug", lines.clone(), &provider);
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let produced = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let job = tracing::info_span!(
                "job",
                scan_id = "s-1",
                project_id = "prj_1",
                instance = "acme",
                trace_id = tracing::field::Empty
            );
            continue_trace(&job, Some(traceparent));
            let _job = job.enter();
            tracing::warn!(attempt = 2, "in the job");
            let call =
                tracing::debug_span!("outbound_call", call = "users.count", row = 2u8, status = tracing::field::Empty);
            let _call = call.enter();
            tracing::debug!(outcome = "200", "call attempt");
            call.record("status", 200u16);
            tracing::info!("after the status");
            current_traceparent_or(None)
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].get("scan_id").is_none());
        for line in &lines[1..] {
            assert_eq!(line["scan_id"], "s-1", "{line}");
            assert_eq!(line["project_id"], "prj_1", "{line}");
            assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{line}");
        }
        assert_eq!(lines[1]["attempt"], 2);
        assert_eq!(lines[1]["message"], "in the job");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[2]["spans"], "job>outbound_call");
        assert_eq!(lines[2]["call"], "users.count");
        assert_eq!(lines[3]["status"], 200);
        let produced = produced.expect("a traceparent of the current span");
        assert_eq!(trace_id_of(&produced), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!produced.contains("00f067aa0ba902b7"), "the event gets the worker's own span id: {produced}");
        assert!(produced.ends_with("-01"), "{produced}");
    }

    #[test]
    fn fields_recorded_after_a_span_starts_are_in_its_lines_and_the_last_value_wins() {
        let lines = Lines::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Json, "clerk_audit=info", lines.clone(), &provider);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!(
                "job",
                scan_id = "s-5",
                instance = %"acme",
                passed = true,
                attempt = tracing::field::Empty,
                note = tracing::field::Empty
            );
            job.record("attempt", 1u32);
            job.record("attempt", 2u32);
            job.record("note", "a \"quoted\" note");
            let _job = job.enter();
            // A span created without a value, given one later.
            let persist = tracing::info_span!("persist", status = tracing::field::Empty);
            persist.record("status", "completed");
            let _persist = persist.enter();
            tracing::info!("inside");
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert_eq!(lines[0]["scan_id"], "s-5", "{}", lines[0]);
        assert_eq!(lines[0]["instance"], "acme", "{}", lines[0]);
        assert_eq!(lines[0]["passed"], true, "{}", lines[0]);
        assert_eq!(lines[0]["attempt"], 2, "{}", lines[0]);
        assert_eq!(lines[0]["note"], "a \"quoted\" note", "{}", lines[0]);
        assert_eq!(lines[0]["status"], "completed", "{}", lines[0]);
        assert_eq!(lines[0]["spans"], "job>persist", "{}", lines[0]);
    }

    #[test]
    fn call_spans_reach_the_log_layer_only_with_debug_lines() {
        for (filter, shown) in [("info", false), ("clerk_audit=debug", true)] {
            let lines = Lines::default();
            let provider = SdkTracerProvider::builder().build();
            let subscriber = subscriber_with_provider(LogFormat::Json, filter, lines.clone(), &provider);
            tracing::subscriber::with_default(subscriber, || {
                let job = tracing::info_span!("job", scan_id = "s-3");
                let _job = job.enter();
                let call = tracing::debug_span!("outbound_call", call = "users.count");
                let _call = call.enter();
                tracing::warn!("inside the call");
            });
            let lines = lines.json();
            assert_eq!(lines.len(), 1, "{lines:#?}");
            assert_eq!(lines[0]["scan_id"], "s-3", "{filter}");
            assert_eq!(lines[0].get("call").is_some(), shown, "{filter}: {}", lines[0]);
        }
    }

    #[test]
    fn job_spans_stay_in_logs_when_info_is_filtered_out() {
        let lines = Lines::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Json, "warn", lines.clone(), &provider);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job", scan_id = "s-2", project_id = "prj_2");
            let _job = job.enter();
            tracing::info!("dropped");
            tracing::warn!("kept");
        });
        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert_eq!(lines[0]["scan_id"], "s-2");
    }

    #[test]
    fn text_lines_are_coloured_only_when_stderr_is_a_terminal() {
        let lines = Lines::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Text, "info", lines.clone(), &provider);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job", scan_id = "s-4");
            let _job = job.enter();
            tracing::warn!(attempt = 2, "in the job");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("scan_id") && text.contains("in the job"), "{text}");
        // Under CI (and `cargo test` into a pipe) stderr is not a terminal: no escape codes.
        assert_eq!(text.contains('\x1b'), std::io::IsTerminal::is_terminal(&std::io::stderr()), "{text:?}");
    }

    #[test]
    fn malformed_traceparent_starts_a_new_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber_with_provider(LogFormat::Text, "off", std::io::sink, &provider);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job");
            continue_trace(&job, Some("00-zz-00f067aa0ba902b7-01"));
            let produced = traceparent(&job).expect("a new trace");
            assert_eq!(produced.len(), 55, "{produced}");
        });
        assert_eq!(trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn otlp_endpoint_gets_the_traces_path() {
        assert_eq!(
            crate::configuration::otlp_traces_url("http://otel-collector:4318").unwrap(),
            "http://otel-collector:4318/v1/traces"
        );
        assert_eq!(
            crate::configuration::otlp_traces_url("http://otel-collector:4318/").unwrap(),
            "http://otel-collector:4318/v1/traces"
        );
        assert_eq!(
            crate::configuration::otlp_traces_url("https://otlp.example.com/custom/v1/traces").unwrap(),
            "https://otlp.example.com/custom/v1/traces"
        );
        assert!(crate::configuration::otlp_traces_url("otel-collector:4318").is_err());
    }
}
