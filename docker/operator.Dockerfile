# syntax=docker/dockerfile:1
#
# runnel-operator: a static musl binary on distroless/static (no shell, no libc), run as
# the distroless `nonroot` user (65532).
#
# Build from the repository root (BuildKit, for the cache mounts and the
# operator.Dockerfile.dockerignore next to this file):
#   docker build -f docker/operator.Dockerfile -t ghcr.io/runnel-dev/runnel-operator:dev .

ARG RUST_VERSION=1.95
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-gcc builds the C code of ring (rustls) and lz4-sys (kafka-protocol).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target "${TARGET}" -p runnel-operator --bin runnel-operator \
 && install -D -m 0755 "target/${TARGET}/release/runnel-operator" /out/runnel-operator

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="runnel-operator" \
      org.opencontainers.image.description="Runnel: the Kubernetes operator for KafkaCluster, Topic and ConsumerGroup" \
      org.opencontainers.image.source="https://github.com/runnel-dev/runnel" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/runnel-operator /usr/local/bin/runnel-operator
# Prometheus /metrics (and health) of the operator, as the chart configures it.
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runnel-operator"]
