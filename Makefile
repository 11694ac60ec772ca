# Runnel's verbs. `make run` starts one broker on 127.0.0.1:9092 with data in ./data;
# `make cluster` three brokers as one cluster on 127.0.0.1:19092-19094 with data in
# ./data/cluster; `make test` installs what the tests need and runs every test.

CARGO ?= cargo
VENV  := .venv
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BROKER_BIN := $(TARGET_DIR)/debug/runnel-broker

.PHONY: run cluster build release test test-rust test-compat test-deps crash-loop crds bench bench-compare bench-metadata bench-replication bench-failover bench-reassignment fuzz images static-check image-check chart-check tools e2e test-k8s fmt lint clippy clean

run:
	$(CARGO) run --release -p runnel-broker -- --listen 127.0.0.1:9092 --data-dir ./data

# Three release brokers as one cluster until Ctrl-C (scripts/cluster.sh: Kafka 127.0.0.1:19092-19094,
# quorum 127.0.0.1:19192-19194, logs in ./data/cluster/node-<i>.log); CLUSTER_ARGS="--fresh" to start empty.
cluster:
	scripts/cluster.sh $(CLUSTER_ARGS)

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release -p runnel-broker

test: lint test-rust static-check image-check chart-check test-compat
	@$(if $(RUNNEL_K8S_ASSETS),$(MAKE) --no-print-directory test-k8s,echo "test-k8s: the Kubernetes scenarios (e2e/scenarios) were not run: RUNNEL_K8S_ASSETS is unset (a directory with kube-apiserver and kube-controller-manager, e.g. ../shared/k8s)")

test-deps:
	scripts/test-deps.sh

# The operator's and the bench's integration tests start the broker binary.
test-rust:
	$(CARGO) build -p runnel-broker
	RUNNEL_BROKER_BIN=$(BROKER_BIN) $(CARGO) test --workspace

# tests/netns runs in a pytest session of its own: it re-executes itself in private network and
# mount namespaces (brokers cut off and healed on a bridge; skipped, with the reason, without root).
test-compat: test-deps
	$(CARGO) build -p runnel-broker
	RUNNEL_BROKER_BIN=$(BROKER_BIN) $(VENV)/bin/pytest tests/compat
	RUNNEL_BROKER_BIN=$(BROKER_BIN) $(VENV)/bin/pytest tests/netns

# The Kubernetes scenarios (e2e/scenarios) on the local backend: etcd + kube-apiserver +
# kube-controller-manager from $RUNNEL_K8S_ASSETS, the chart, the operator under the chart's
# RBAC, brokers as pods (root). First the harness's own unit tests (e2e/unit, no cluster).
test-k8s:
	@test -n "$(RUNNEL_K8S_ASSETS)" || { echo "test-k8s: set RUNNEL_K8S_ASSETS to a directory with kube-apiserver and kube-controller-manager (plain or .xz, e.g. ../shared/k8s)" >&2; exit 1; }
	scripts/k8s-deps.sh
	$(VENV)/bin/pytest -p no:cacheprovider e2e/unit
	$(CARGO) build -p runnel-broker -p runnel-operator
	RUNNEL_E2E_BACKEND=local RUNNEL_BROKER_BIN=$(BROKER_BIN) RUNNEL_OPERATOR_BIN=$(TARGET_DIR)/debug/runnel-operator $(VENV)/bin/pytest e2e/scenarios

# 50 kill -9/restart cycles under an idempotent acks=all producer (`make test` runs 5); CRASH_SEED=n for another seed.
crash-loop: test-deps
	$(CARGO) build -p runnel-broker
	CRASH_CYCLES=50 RUNNEL_BROKER_BIN=$(BROKER_BIN) $(VENV)/bin/pytest tests/compat/test_crash_loop.py -s

# runnel-bench against a fresh release broker; BENCH_ARGS="--records 1000000 --acks all".
bench:
	bench/local.sh $(BENCH_ARGS)

# runnel vs Tansu (in memory) side by side; installs Tansu under target/ (long first build).
bench-compare:
	bench/compare.sh

# Metadata requests/s of each broker of a fresh 3-broker cluster (127.0.0.1:29092-29094) holding
# 10 topics x 100 partitions (bench/metadata.sh; RUNS, TOPICS, PARTITIONS, CONNECTIONS, DURATION, WARMUP).
bench-metadata:
	$(CARGO) build --release -p runnel-broker -p runnel-bench
	RUNNEL_BROKER_BIN=$(TARGET_DIR)/release/runnel-broker RUNNEL_BENCH_BIN=$(TARGET_DIR)/release/runnel-bench \
	RUNNEL_LOG=warn scripts/cluster.sh --fresh --data-dir $(TARGET_DIR)/bench-metadata/cluster \
	    --port 29092 --controller-port 29192 -- bench/metadata.sh

# RF=3 acks=all on a fresh 3-broker cluster against RF=1 acks=all on one broker and the disk's
# write+fdatasync ceiling, and the same load at acks=1, alternating rounds (bench/replication.sh;
# ROUNDS, DURATION, PARTITIONS, ...).
bench-replication:
	$(CARGO) build --release -p runnel-broker -p runnel-bench
	RUNNEL_BROKER_BIN=$(TARGET_DIR)/release/runnel-broker RUNNEL_BENCH_BIN=$(TARGET_DIR)/release/runnel-bench \
	RUNNEL_DISK_CEILING_BIN=$(TARGET_DIR)/release/runnel-disk-ceiling bench/replication.sh

# Leader kill -9 → first acknowledged acks=all produce, 20 kills on a fresh 3-broker cluster with
# default sessions (bench/failover.sh); SESSION_MS=3000 HEARTBEAT_MS=500 for shorter ones.
bench-failover:
	$(CARGO) build --release -p runnel-broker -p runnel-bench
	RUNNEL_BROKER_BIN=$(TARGET_DIR)/release/runnel-broker RUNNEL_FAILOVER_BIN=$(TARGET_DIR)/release/runnel-failover \
	bench/failover.sh

# A partition of FILL_MB MiB (128) moved between brokers of a fresh 3-broker cluster with
# AlterPartitionReassignments: bytes/s and the produce p99 of an acks=all load, without and
# with a THROTTLE (10 MiB/s) (bench/reassignment.sh; kafka-python from test-deps).
bench-reassignment: test-deps
	$(CARGO) build --release -p runnel-broker -p runnel-bench
	RUNNEL_BROKER_BIN=$(TARGET_DIR)/release/runnel-broker RUNNEL_BENCH_BIN=$(TARGET_DIR)/release/runnel-bench \
	bench/reassignment.sh

# Mutation fuzzer over the request path, in-process (release); FUZZ_ARGS="--iterations 10000000 --seed 1" (default: 60 s).
fuzz:
	$(CARGO) run --release -p runnel-fuzz -- run $(FUZZ_ARGS)

# Regenerates crds/ from the Rust types; `cargo test` fails while crds/ is stale.
crds:
	$(CARGO) run -q -p runnel-operator --bin crdgen
	rm -f charts/runnel/crds/*.yaml
	cp crds/*.yaml charts/runnel/crds/

# Container images of the broker and the operator, tagged <version>-<git sha>; needs docker or podman.
images:
	scripts/images.sh

# The images' static musl binaries: built (debug), statically linked, answer --version
# (the part of `make images` that needs no container engine; part of `make test`).
static-check:
	scripts/static-check.sh

# The images built FROM scratch with those binaries (podman, nothing pulled; docker/*.local.Dockerfile)
# and inspected unrun: numeric non-root user, entrypoint, ports, labels against the release
# Dockerfiles; the unpacked binary static and answering --version; size bound. Part of `make test`.
image-check: static-check
	scripts/image-check.sh

# helm lint/template, kubernetes-validate --strict, example CRs against the CRDs.
chart-check:
	scripts/chart-check.sh

# helm, kubectl and kubernetes-validate into .tools/ (chart-check and e2e run it themselves).
tools:
	scripts/tools.sh

# The kind end-to-end suite (needs docker and kind; not part of `make test`). E2E_BROKERS=3 for three brokers.
e2e:
	e2e/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) .tools tests/compat/js/node_modules
