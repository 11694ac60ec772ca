# The scenario runner of the kind suite (`make e2e`): the shared scenarios (e2e/scenarios)
# and their harness, kafka-python, pytest and kubectl. e2e/run.sh builds it from the
# repository root (runner.Dockerfile.dockerignore keeps the context to what is copied),
# loads it into kind and runs it as a Job; needs PyPI and dl.k8s.io at build time only.
FROM docker.io/library/python:3.11-slim

ARG TARGETARCH
ARG KUBECTL_VERSION=v1.35.2
ADD https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl /usr/local/bin/kubectl
ADD https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256 /tmp/kubectl.sha256
RUN echo "$(cat /tmp/kubectl.sha256)  /usr/local/bin/kubectl" | sha256sum --check --quiet - \
    && chmod 0755 /usr/local/bin/kubectl \
    && rm /tmp/kubectl.sha256

COPY e2e/kind/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

# The repository's layout, so the scenarios find crds/ and charts/ where they look.
WORKDIR /runnel
COPY crds/ crds/
COPY charts/runnel/crds/ charts/runnel/crds/
COPY charts/runnel/examples/ charts/runnel/examples/
COPY e2e/harness/ e2e/harness/
COPY e2e/scenarios/ e2e/scenarios/

ENV RUNNEL_E2E_BACKEND=kind PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Root on purpose: with the Job's hostPID it SIGKILLs an operator container's process
# (e2e/harness/kind.py). Extra pytest arguments come from PYTEST_ADDOPTS.
ENTRYPOINT ["python", "-m", "pytest", "-p", "no:cacheprovider", "-rs", "e2e/scenarios"]
