# cronwf's image: `cronwf serve --kubernetes` as uid 10001 on a read-only root filesystem
# (manifests/base/deployment.yaml). Two stages: the builder installs the package and its
# dependencies into a virtual environment; the final stage copies only that environment, so
# pip's caches and the sources never reach the image.
#   docker build -t ghcr.io/cronwf/cronwf:0.1.0 .

# Both stages must use the same base: the virtual environment's python is a link to the
# base's interpreter.
FROM python:3.11-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/cronwf

WORKDIR /src
# What the install reads: the project's metadata (README.md is its long description) and
# the two packages.
COPY pyproject.toml README.md ./
COPY policies/ policies/
COPY scheduler/ scheduler/
# A regular (not editable) install of the project from these sources, runtime dependencies
# only: the test extras stay out of the image. pip compiles the modules here, so nothing
# needs writing at run time.
RUN /opt/cronwf/bin/pip install .


FROM python:3.11-slim

# No .pyc writes at run time (the root filesystem is read-only; they were compiled in the
# builder) and unbuffered output, so log lines reach `kubectl logs` at once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/cronwf/bin:$PATH \
    CRONWF_STATE_DIR=/var/lib/cronwf

# A fixed, non-root uid and gid (10001, as the Deployment's securityContext says) with no
# login shell; the state directory is the only place it owns.
RUN groupadd --system --gid 10001 cronwf \
    && useradd --system --uid 10001 --gid cronwf --no-create-home \
       --home-dir /var/lib/cronwf --shell /usr/sbin/nologin cronwf \
    && mkdir -p /var/lib/cronwf \
    && chown cronwf:cronwf /var/lib/cronwf

COPY --from=builder /opt/cronwf /opt/cronwf

WORKDIR /var/lib/cronwf
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001

# /metrics, /healthz and /readyz.
EXPOSE 9090

# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (see the Deployment).
ENTRYPOINT ["cronwf"]
CMD ["serve", "--kubernetes"]
