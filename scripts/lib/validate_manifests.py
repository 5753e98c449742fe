"""Offline validation of the Kubernetes manifests in deploy/ (run by scripts/validate-manifests.sh).

1. Built-in kinds (Deployment, PodDisruptionBudget, ServiceAccount, Secret, ...) against the Kubernetes
   OpenAPI schemas bundled by the `kubernetes-validate` package, in strict mode (unknown fields fail),
   for every Kubernetes version asked for.
2. KEDA kinds (ScaledObject, TriggerAuthentication: CRDs, so not in those schemas) against
   deploy/schemas/keda.sh_v1alpha1.schema.json, written for this project from the KEDA 2.x CRDs.
3. The project's own rules, which no schema can know: probes on the ops port, the grace period above
   the drain grace, secrets from a Secret, non-root read-only container, the PDB and the ScaledObject
   pointing at the Deployment, the scaler counting unacknowledged jobs on the configured queue.

Any other kind (an unknown CRD) fails: add a schema rather than skipping it silently.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEDA_SCHEMA = "schemas/keda.sh_v1alpha1.schema.json"
# Files of deploy/ that are not Kubernetes objects.
NOT_OBJECTS = {"kustomization.yaml"}


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def check(self, condition: bool, where: str, message: str) -> None:
        if not condition:
            self.add(where, message)


def load_documents(deploy: pathlib.Path) -> list[tuple[str, dict]]:
    documents = []
    for path in sorted(deploy.glob("*.yaml")) + sorted(deploy.glob("*.yml")):
        if path.name in NOT_OBJECTS:
            continue
        with path.open() as handle:
            for index, document in enumerate(yaml.safe_load_all(handle)):
                if document is None:
                    continue
                name = document.get("metadata", {}).get("name", "?")
                documents.append((f"{path.name}#{index} {document.get('kind', '?')}/{name}", document))
    return documents


def validate_schemas(documents, deploy: pathlib.Path, versions: list[str], problems: Problems) -> None:
    keda_schema = json.loads((deploy / KEDA_SCHEMA).read_text())
    jsonschema.Draft202012Validator.check_schema(keda_schema)
    keda = jsonschema.Draft202012Validator(keda_schema)
    for where, document in documents:
        api_version = document.get("apiVersion", "")
        if api_version.startswith("keda.sh/"):
            for error in keda.iter_errors(document):
                path = "/".join(str(p) for p in error.absolute_path)
                problems.add(where, f"KEDA schema: {path}: {error.message}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.add(where, error.message)
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.path)
                problems.add(where, f"Kubernetes {version}: {path}: {error.message}")
            except Exception as error:  # VersionNotSupportedError, InvalidSchemaError
                problems.add(where, f"Kubernetes {version}: {getattr(error, 'message', error)}")


def find(documents, kind: str) -> list[tuple[str, dict]]:
    return [(where, doc) for where, doc in documents if doc.get("kind") == kind]


def env_value(container: dict, name: str) -> dict | None:
    return next((e for e in container.get("env", []) if e.get("name") == name), None)


def check_rules(documents, config: dict, problems: Problems) -> None:
    ops_port = int(config["ops"]["listen"].rsplit(":", 1)[1])
    jobs_queue = config["amqp"]["jobs_queue"]

    deployments = find(documents, "Deployment")
    problems.check(len(deployments) == 1, "deploy/", f"expected one Deployment, found {len(deployments)}")
    if not deployments:
        return
    where, deployment = deployments[0]
    name = deployment["metadata"]["name"]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    labels = template["metadata"].get("labels", {})
    selector = deployment["spec"]["selector"].get("matchLabels", {})
    problems.check(selector.items() <= labels.items(), where, "the selector does not match the pod labels")
    problems.check("replicas" not in deployment["spec"], where, "replicas is pinned; the ScaledObject owns it")

    containers = pod["containers"]
    worker = next((c for c in containers if c.get("name") == "worker"), None)
    if worker is None:
        problems.add(where, "no container named worker")
        return
    cwhere = f"{where} container worker"
    problems.check(worker.get("args", [None])[0] == "worker" or worker.get("command") is None and not worker.get("args"),
                   cwhere, "must run the worker subcommand")
    ports = {p.get("name"): p.get("containerPort") for p in worker.get("ports", [])}
    problems.check(ports.get("ops") == ops_port, cwhere, f"the ops port must be named ops and be {ops_port} (ops.listen)")

    def probe_target(probe_name: str) -> tuple[str | None, object]:
        probe = worker.get(probe_name) or {}
        get = probe.get("httpGet") or {}
        return get.get("path"), get.get("port")

    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got_path, got_port = probe_target(probe_name)
        problems.check(got_path == path, cwhere, f"{probe_name} must GET {path}, has {got_path}")
        problems.check(got_port in ("ops", ops_port), cwhere, f"{probe_name} must target the ops port, has {got_port}")
    startup_path, _ = probe_target("startupProbe")
    problems.check(startup_path in (None, "/healthz"), cwhere, "startupProbe must GET /healthz (never /readyz)")

    drain = config["worker"]["drain_grace_secs"]
    override = env_value(worker, "CLERK_AUDIT_WORKER__DRAIN_GRACE_SECS")
    if override and "value" in override:
        drain = int(override["value"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    # The drain, then up to 10 s of final outbox flush (src/startup.rs), then a margin.
    problems.check(grace >= drain + 15, where,
                   f"terminationGracePeriodSeconds {grace} must exceed the drain grace {drain} s + 15 s (outbox flush, margin)")

    for variable in ("CLERK_AUDIT_AMQP__URL", "CLERK_AUDIT_DATABASE__URL"):
        entry = env_value(worker, variable)
        problems.check(bool(entry and entry.get("valueFrom", {}).get("secretKeyRef")), cwhere,
                       f"{variable} must come from a Secret (valueFrom.secretKeyRef)")
    environment = env_value(worker, "CLERK_AUDIT_ENVIRONMENT")
    problems.check(environment is None or environment.get("value") == "production", cwhere,
                   "CLERK_AUDIT_ENVIRONMENT must be production (or left to the image)")

    resources = worker.get("resources", {})
    for kind in ("requests", "limits"):
        problems.check({"cpu", "memory"} <= set(resources.get(kind, {})), cwhere, f"resources.{kind} needs cpu and memory")

    pod_security = pod.get("securityContext", {})
    security = worker.get("securityContext", {})
    problems.check(pod_security.get("runAsNonRoot") is True or security.get("runAsNonRoot") is True, cwhere, "runAsNonRoot")
    problems.check(security.get("readOnlyRootFilesystem") is True, cwhere, "readOnlyRootFilesystem")
    problems.check(security.get("allowPrivilegeEscalation") is False, cwhere, "allowPrivilegeEscalation: false")
    problems.check("ALL" in security.get("capabilities", {}).get("drop", []), cwhere, "capabilities.drop: [ALL]")

    pdbs = find(documents, "PodDisruptionBudget")
    problems.check(len(pdbs) == 1, "deploy/", f"expected one PodDisruptionBudget, found {len(pdbs)}")
    for pwhere, pdb in pdbs:
        match = pdb["spec"].get("selector", {}).get("matchLabels", {})
        problems.check(bool(match) and match.items() <= labels.items(), pwhere, "the selector does not select the worker pods")
        problems.check(pdb["spec"].get("minAvailable") not in (1, "100%"), pwhere,
                       "minAvailable would block every eviction of a single replica; use maxUnavailable")

    auths = {doc["metadata"]["name"] for _, doc in find(documents, "TriggerAuthentication")}
    scaled = find(documents, "ScaledObject")
    problems.check(len(scaled) == 1, "deploy/", f"expected one ScaledObject, found {len(scaled)}")
    for swhere, scaled_object in scaled:
        spec = scaled_object["spec"]
        target = spec["scaleTargetRef"]
        problems.check(target.get("name") == name and target.get("kind", "Deployment") == "Deployment", swhere,
                       f"scaleTargetRef must name the Deployment {name}")
        rabbit = [t for t in spec["triggers"] if t.get("type") == "rabbitmq"]
        problems.check(len(rabbit) == 1, swhere, "expected one rabbitmq trigger")
        for trigger in rabbit:
            metadata = trigger.get("metadata", {})
            problems.check(metadata.get("queueName") == jobs_queue, swhere, f"queueName must be {jobs_queue} (amqp.jobs_queue)")
            problems.check(metadata.get("mode", "QueueLength") == "QueueLength", swhere, "mode must be QueueLength")
            problems.check(metadata.get("protocol") == "http", swhere,
                           "protocol must be http: only the management API counts unacknowledged messages")
            problems.check(metadata.get("excludeUnacknowledged", "false") == "false", swhere,
                           "unacknowledged jobs must count (excludeUnacknowledged: false)")
            problems.check("host" not in metadata, swhere, "the management URL holds credentials: use the TriggerAuthentication")
            ref = trigger.get("authenticationRef", {}).get("name")
            problems.check(ref in auths, swhere, f"authenticationRef {ref!r} names no TriggerAuthentication in deploy/")
            concurrency = env_value(worker, "CLERK_AUDIT_WORKER__CONCURRENCY")
            jobs_per_replica = int(concurrency["value"]) if concurrency and "value" in concurrency else config["worker"]["concurrency"]
            problems.check(metadata.get("value") == str(jobs_per_replica), swhere,
                           f"value must equal the jobs one replica holds (worker.concurrency = {jobs_per_replica})")


def check_dockerfile(path: pathlib.Path, config: dict, problems: Problems) -> None:
    """The image promises of the Dockerfile that the deploy/ manifests rely on."""
    if not path.exists():
        problems.add(str(path), "missing")
        return
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]
    stages = [arg for op, arg in instructions if op == "FROM"]
    where = path.name
    problems.check(len(stages) >= 2, where, "must be multi-stage (build, runtime)")
    final = []
    for op, arg in instructions:
        if op == "FROM":
            final = []
        final.append((op, arg))
    users = [arg for op, arg in final if op == "USER"]
    problems.check(bool(users) and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", where,
                   "the runtime stage must end with a numeric non-root USER (runAsNonRoot verifies it)")
    ops_port = config["ops"]["listen"].rsplit(":", 1)[1]
    problems.check(any(op == "EXPOSE" and ops_port in arg.split() for op, arg in final), where, f"EXPOSE {ops_port} (ops.listen)")
    problems.check(('ENTRYPOINT', '["clerk-audit"]') in final, where, 'ENTRYPOINT ["clerk-audit"]')
    problems.check(('CMD', '["worker"]') in final, where, 'CMD ["worker"]')
    text = path.read_text()
    problems.check("CLERK_AUDIT_CONFIG_DIR=" in text and any(op == "COPY" and arg.startswith("config") for op, arg in final),
                   where, "config/ copied into the image and CLERK_AUDIT_CONFIG_DIR set")
    problems.check("CLERK_AUDIT_ENVIRONMENT=production" in text, where, "CLERK_AUDIT_ENVIRONMENT=production")
    problems.check("ca-certificates" in text, where, "CA certificates in the runtime image")


def validate(deploy: pathlib.Path, versions: list[str], config: dict) -> tuple[list, Problems]:
    documents = load_documents(deploy)
    problems = Problems()
    if not documents:
        problems.add(str(deploy), "no manifests found")
    validate_schemas(documents, deploy, versions, problems)
    check_rules(documents, config, problems)
    return documents, problems


# Broken copies of the manifests the validator must refuse: (file, text to replace, replacement, what
# the error names).
MUTATIONS = [
    ("deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesytem: true", "readOnlyRootFilesytem"),
    ("deployment.yaml", "path: /readyz", "path: /healthz", "readinessProbe"),
    ("deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds"),
    ("deployment.yaml", "containerPort: 9090", "containerPort: \"9090\"", "containerPort"),
    ("deployment.yaml", "secretKeyRef:\n                  name: clerk-audit\n                  key: amqp-url",
     "secretKeyRef:\n                  name: clerk-audit", "key"),
    ("poddisruptionbudget.yaml", "maxUnavailable: 1", "minAvailable: 1", "minAvailable"),
    ("scaledobject.yaml", 'value: "64"', "value: 64", "value"),
    ("scaledobject.yaml", "        protocol: http", "        protocol: amqp", "protocol"),
    ("scaledobject.yaml", 'excludeUnacknowledged: "false"', 'excludeUnacknowledged: "true"', "unacknowledged"),
    ("scaledobject.yaml", "queueName: clerk-audit.jobs", "queueName: clerk-audit.job", "queueName"),
    ("scaledobject.yaml", "cooldownPeriod: 300", "coolDownPeriod: 300", "coolDownPeriod"),
    ("scaledobject.yaml", "name: clerk-audit-rabbitmq\n", "name: clerk-audit-rabbit\n", "authenticationRef"),
]


def self_test(deploy: pathlib.Path, versions: list[str], config: dict) -> list[str]:
    """Checks that each mutation of the manifests is refused; answers the mutations that were not."""
    import shutil
    import tempfile

    missed = []
    for file, old, new, needle in MUTATIONS:
        with tempfile.TemporaryDirectory() as scratch:
            copy = pathlib.Path(scratch) / "deploy"
            shutil.copytree(deploy, copy)
            text = (copy / file).read_text()
            if old not in text:
                missed.append(f"{file}: the self-test expects {old!r} in it")
                continue
            (copy / file).write_text(text.replace(old, new, 1))
            _, problems = validate(copy, versions[:1], config)
            if not any(needle in item for item in problems.items):
                missed.append(f"{file}: {old!r} -> {new!r} was not refused ({problems.items})")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-versions", default="1.31.0 1.37.0")
    parser.add_argument("--self-test", action="store_true", help="also check that broken copies are refused")
    parser.add_argument("deploy", nargs="?", default=str(ROOT / "deploy"))
    args = parser.parse_args()
    deploy = pathlib.Path(args.deploy)
    versions = args.kubernetes_versions.split()
    config = tomllib.loads((ROOT / "config" / "default.toml").read_text())

    if args.self_test:
        missed = self_test(deploy, versions, config)
        for item in missed:
            print(f"self-test: {item}", file=sys.stderr)
        if missed:
            return 1
        print(f"self-test: {len(MUTATIONS)} broken copies refused")
    documents, problems = validate(deploy, versions, config)
    check_dockerfile(ROOT / "Dockerfile", config, problems)
    for where, _ in documents:
        print(f"checked {where}")
    if problems.items:
        for item in problems.items:
            print(f"error: {item}", file=sys.stderr)
        print(f"{len(problems.items)} problem(s) in {deploy}", file=sys.stderr)
        return 1
    print(f"{len(documents)} objects valid (Kubernetes {', '.join(versions)}; KEDA schema {KEDA_SCHEMA})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
