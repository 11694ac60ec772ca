# runnel-broker, local variant: FROM scratch with the static musl binary that
# scripts/static-check.sh builds, for machines without a registry (nothing is pulled).
# `make image-check` builds it with podman and inspects the result; releases use
# docker/broker.Dockerfile (multi-stage, distroless). Keep the runtime part below (labels,
# ENV, EXPOSE, USER, ENTRYPOINT) the same as there: the check compares them.
#
# The build context is a directory that scripts/image-check.sh stages:
#   runnel-broker                  the binary
#   rootfs/                        /etc/passwd and /etc/group (root, nonroot=65532), /tmp
#   var-lib-runnel/data/           the data directory (mode 0750)

FROM scratch
LABEL org.opencontainers.image.title="runnel-broker" \
      org.opencontainers.image.description="Runnel: a Kafka-compatible broker" \
      org.opencontainers.image.source="https://github.com/runnel-dev/runnel" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY rootfs/ /
COPY runnel-broker /usr/local/bin/runnel-broker
COPY --chown=65532:65532 var-lib-runnel/ /var/lib/runnel/
ENV RUNNEL_LISTEN=0.0.0.0:9092 \
    RUNNEL_ADVERTISED_LISTENER=localhost:9092 \
    RUNNEL_DATA_DIR=/var/lib/runnel/data \
    RUNNEL_HEALTH_LISTEN=0.0.0.0:9095 \
    RUNNEL_METRICS_LISTEN=0.0.0.0:9090
# kafka, metadata quorum (gRPC, between brokers), grpc.health.v1 (probes), Prometheus /metrics
EXPOSE 9092 9093 9095 9090
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runnel-broker"]
