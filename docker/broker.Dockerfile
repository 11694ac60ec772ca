# syntax=docker/dockerfile:1
#
# runnel-broker: a static musl binary on distroless/static (no shell, no libc), run as
# the distroless `nonroot` user (65532), which the operator's StatefulSet also runs as.
#
# Build from the repository root (BuildKit, for the cache mounts and the
# broker.Dockerfile.dockerignore next to this file):
#   docker build -f docker/broker.Dockerfile -t ghcr.io/runnel-dev/runnel-broker:dev .
# Alone on a laptop:
#   docker run --rm -p 9092:9092 ghcr.io/runnel-dev/runnel-broker:dev

ARG RUST_VERSION=1.95
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-gcc builds the C code of zstd-sys and lz4-sys (kafka-protocol's codecs).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds; the binary is copied out
# of the cached target/ because the mount is gone in the next step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target "${TARGET}" -p runnel-broker --bin runnel-broker \
 && install -D -m 0755 "target/${TARGET}/release/runnel-broker" /out/runnel-broker \
 && /out/runnel-broker --version
# The data directory must exist and belong to the runtime user when no volume is mounted.
RUN install -d -o 65532 -g 65532 -m 0750 /out/var/lib/runnel/data

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="runnel-broker" \
      org.opencontainers.image.description="Runnel: a Kafka-compatible broker" \
      org.opencontainers.image.source="https://github.com/runnel-dev/runnel" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/runnel-broker /usr/local/bin/runnel-broker
COPY --from=build --chown=65532:65532 /out/var/lib/runnel /var/lib/runnel
# Container defaults; in Kubernetes the operator passes every one of these as a flag,
# and flags win over RUNNEL_* variables.
ENV RUNNEL_LISTEN=0.0.0.0:9092 \
    RUNNEL_ADVERTISED_LISTENER=localhost:9092 \
    RUNNEL_DATA_DIR=/var/lib/runnel/data \
    RUNNEL_HEALTH_LISTEN=0.0.0.0:9095 \
    RUNNEL_METRICS_LISTEN=0.0.0.0:9090
# kafka, metadata quorum (gRPC, between brokers), grpc.health.v1 (probes), Prometheus /metrics
EXPOSE 9092 9093 9095 9090
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runnel-broker"]
