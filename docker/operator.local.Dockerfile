# runnel-operator, local variant: FROM scratch with the static musl binary that
# scripts/static-check.sh builds, for machines without a registry (nothing is pulled).
# `make image-check` builds it with podman and inspects the result; releases use
# docker/operator.Dockerfile (multi-stage, distroless). Keep the runtime part below (labels,
# EXPOSE, USER, ENTRYPOINT) the same as there: the check compares them.
#
# The build context is a directory that scripts/image-check.sh stages:
#   runnel-operator                the binary
#   rootfs/                        /etc/passwd and /etc/group (root, nonroot=65532), /tmp

FROM scratch
LABEL org.opencontainers.image.title="runnel-operator" \
      org.opencontainers.image.description="Runnel: the Kubernetes operator for KafkaCluster, Topic and ConsumerGroup" \
      org.opencontainers.image.source="https://github.com/runnel-dev/runnel" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY rootfs/ /
COPY runnel-operator /usr/local/bin/runnel-operator
# Prometheus /metrics (and health) of the operator, as the chart configures it.
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runnel-operator"]
