# syntax=docker/dockerfile:1
#
# clerk-audit worker image.
#
#   docker build --build-arg GIT_SHA="$(git rev-parse HEAD)" -t clerk-audit:0.1.0 .
#   docker run --rm -e CLERK_AUDIT_AMQP__URL=... -e CLERK_AUDIT_DATABASE__URL=... -p 9090:9090 clerk-audit:0.1.0
#
# Two stages: a Rust build stage (dependencies compiled in their own layer, rebuilt only when
# Cargo.toml or Cargo.lock change) and a small Debian runtime with CA certificates, running as a
# non-root user. Build and runtime use the same Debian release, so the binary's glibc matches.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /build

# make: jemalloc (the binary's allocator, built from source by tikv-jemalloc-sys) builds with it; the slim
# image has the C compiler but not make. Not version-pinned: the release's current make.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# 1. Dependencies only: the workspace's real manifests with empty crates. This layer is cached until a
#    manifest or Cargo.lock changes. Then forget the empty crates' own artifacts, so step 2 always rebuilds
#    them from the real sources (COPY keeps the sources' modification times). Only the product binary is
#    built: the sandbox and loadgen crates (test stand-ins, chaos and benchmark drivers) are workspace
#    members that never reach the image.
COPY Cargo.toml Cargo.lock ./
COPY crates/repo-scan/Cargo.toml crates/repo-scan/Cargo.toml
COPY crates/sandbox/Cargo.toml crates/sandbox/Cargo.toml
COPY crates/loadgen/Cargo.toml crates/loadgen/Cargo.toml
RUN mkdir -p src crates/repo-scan/src crates/repo-scan/benches crates/sandbox/src crates/loadgen/src/bin \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && : > crates/repo-scan/src/lib.rs \
    && printf 'fn main() {}\n' > crates/repo-scan/benches/repo_scan.rs \
    && : > crates/sandbox/src/lib.rs \
    && printf 'fn main() {}\n' > crates/sandbox/src/main.rs \
    && : > crates/loadgen/src/lib.rs \
    && printf 'fn main() {}\n' > crates/loadgen/src/bin/chaos.rs \
    && printf 'fn main() {}\n' > crates/loadgen/src/bin/bench.rs \
    && cargo build --release --locked --package clerk-audit --bin clerk-audit \
    && rm -rf src crates/repo-scan/src target/release/clerk-audit* target/release/deps/clerk_audit-* \
        target/release/deps/libclerk_audit-* target/release/deps/clerk_repo_scan-* \
        target/release/deps/libclerk_repo_scan-* target/release/.fingerprint/clerk-audit-* \
        target/release/.fingerprint/clerk-repo-scan-*

# 2. The product crates. Migrations, the contracts (`clerk-audit schema`) and config/default.toml (the one-shot
#    audit's defaults) are embedded at compile time.
COPY src ./src
COPY crates/repo-scan/src ./crates/repo-scan/src
COPY migrations ./migrations
COPY contracts ./contracts
COPY config/default.toml ./config/default.toml
ARG GIT_SHA=unknown
RUN touch src/main.rs src/lib.rs crates/repo-scan/src/lib.rs \
    && GIT_SHA="${GIT_SHA}" cargo build --release --locked --package clerk-audit --bin clerk-audit \
    && install -m 0755 target/release/clerk-audit /usr/local/bin/clerk-audit

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="clerk-audit" \
      org.opencontainers.image.description="Read-only audit of a customer's Clerk instance (RabbitMQ worker)" \
      org.opencontainers.image.revision="${GIT_SHA}"

# CA certificates: Clerk, Svix and AWS KMS are reached over TLS verified against the system roots.
# Not version-pinned: the release's current ca-certificates is what we want (security updates).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 clerk-audit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin clerk-audit

COPY --from=build /usr/local/bin/clerk-audit /usr/local/bin/clerk-audit
COPY config/ /etc/clerk-audit/

# Configuration: config/default.toml + config/production.toml from the image; secrets
# (CLERK_AUDIT_AMQP__URL, CLERK_AUDIT_DATABASE__URL) and overrides (CLERK_AUDIT_<SECTION>__<KEY>) from
# the environment. Logs are JSON lines on stderr; RUST_LOG sets the level.
ENV CLERK_AUDIT_CONFIG_DIR=/etc/clerk-audit \
    CLERK_AUDIT_ENVIRONMENT=production \
    RUST_LOG=info

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# The ops port (ops.listen): /healthz, /readyz, /metrics.
EXPOSE 9090

ENTRYPOINT ["clerk-audit"]
CMD ["worker"]
