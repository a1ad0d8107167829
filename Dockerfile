# syntax=docker/dockerfile:1
#
# vpsie-autoscaler image: a distroless Python 3.13 runtime (no shell, no package manager, no pip),
# non-root UID 65532, nothing writable needed at run time, reproducible from SOURCE_DATE_EPOCH.
#
#   builder  runs on the *build* platform and resolves wheels for the *target* platform from uv.lock
#            (uv --python-platform), so an arm64 image needs no emulation; bytecode is compiled here
#            because the pod's root filesystem is read-only.
#   runtime  the distroless base plus one COPY: no RUN (there is no shell to run it with).
#
# Build: `docker buildx bake` (docker-bake.hcl) or `make image` (buildah, both platforms).

# The runtime base, pinned by digest: Debian 13's python3.13 and the libraries it links, no shell.
# Bump deliberately: `docker buildx imagetools inspect <tag> --format '{{.Manifest.Digest}}'` gives the
# multi-platform index digest. hack/image/build.sh assembles the same base from Debian packages when
# the registry cannot be reached.
ARG PYTHON_IMAGE=gcr.io/distroless/python3-debian13:nonroot@sha256:614040f7f08b3f0dca943ea54eae94ea555ea2b9ca83d1acda1b7e4238ce91fb
# The builder needs a shell and the same Python minor (3.13, the same bytecode magic) as the runtime.
ARG BUILDER_IMAGE=python:3.13-slim@sha256:8d9d0b8bcf6506481eae4907c18f5e3e7902e629f5f6d684f9e7c32e85e3ddf0
# uv, pinned to the version the Makefile uses.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM --platform=$BUILDPLATFORM ${UV_IMAGE} AS uv

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS builder
ARG TARGETARCH
# Reproducible builds: the wheel's timestamps (and the image's, set by the builder tool) come from it.
ARG SOURCE_DATE_EPOCH
# Never download an interpreter: the base image's Python is the one the image runs. Trust the system
# CA store (the base's, or a build machine's proxy CA mounted over it) rather than uv's built-in roots.
ENV UV_PYTHON_DOWNLOADS=0 \
    UV_SYSTEM_CERTS=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    SITE=/opt/vpsie-autoscaler/site-packages
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src

# Dependencies first, from the lock file only: this layer is reused until uv.lock changes.
# - Type stubs are for editors, not for the controller (kubernetes_asyncio ships ~840 of them).
# - Bytecode is compiled here, unchecked-hash: valid whatever the file timestamps and never rewritten,
#   because the pod's root filesystem is read-only.
# - kubernetes_asyncio's generated API and model modules (40 MB on disk) ship as bytecode only: their
#   source lines are never worth reading in a traceback, and dropping them keeps the image in budget.
#   The package __init__ files stay as source: the lazy importer (kube/_lazy_import.py) reads them.
COPY pyproject.toml uv.lock ./
RUN set -eu; \
    case "${TARGETARCH}" in \
        amd64) platform=x86_64-manylinux_2_28 ;; \
        arm64) platform=aarch64-manylinux_2_28 ;; \
        *) echo "unsupported TARGETARCH=${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    uv export --frozen --no-dev --no-emit-project --format requirements-txt -o /tmp/requirements.txt; \
    uv pip install --no-deps --only-binary :all: --require-hashes \
        --python-platform "${platform}" --python-version 3.13 \
        --target "${SITE}" -r /tmp/requirements.txt; \
    find "${SITE}" -name '*.pyi' -delete; \
    rm -rf "${SITE:?}/bin"; \
    generated="${SITE}/kubernetes_asyncio/client"; \
    python3 -m compileall -q -j 1 -b --invalidation-mode unchecked-hash "${generated}"; \
    find "${generated}" -name '*.py' ! -name __init__.py -delete; \
    find "${generated}" -name __init__.pyc -delete; \
    find "${generated}" -name __pycache__ -prune -exec rm -rf {} +; \
    python3 -m compileall -q -j 1 --invalidation-mode unchecked-hash "${SITE}"

# Then the project itself, as a normal (non-editable) wheel, with its bytecode. uv records when it
# installed a local wheel (uv_cache.json, for its own cache): that time would make every build differ.
COPY README.md ./
COPY vpsie_autoscaler ./vpsie_autoscaler
RUN set -eu; \
    uv build --wheel --out-dir /tmp/dist; \
    uv pip install --no-deps --python-version 3.13 --target "${SITE}" /tmp/dist/*.whl; \
    rm -rf "${SITE:?}/bin" "${SITE}"/vpsie_autoscaler-*.dist-info/uv_cache.json; \
    sed -i '/\/uv_cache\.json,/d' "${SITE}"/vpsie_autoscaler-*.dist-info/RECORD; \
    python3 -m compileall -q -j 1 --invalidation-mode unchecked-hash "${SITE}/vpsie_autoscaler"

# Explicit target platform: BuildKit's default anyway, but buildah (Debian bookworm's 1.28) otherwise
# keeps the builder's --platform for the stages after it.
# hadolint ignore=DL3065
FROM --platform=$TARGETPLATFORM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/vpsie/vpsie-autoscaler
LABEL org.opencontainers.image.title="vpsie-autoscaler" \
      org.opencontainers.image.description="Kubernetes node autoscaler for the VPSie cloud" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="VPSie"
# PYTHONPATH instead of a virtualenv: no interpreter symlink to break, the builder's Python lives in
# /usr/local/bin (python:*-slim), the runtime's in /usr/bin (Debian). HOME points at the pod's emptyDir
# because the root filesystem is read-only.
ENV PYTHONPATH=/opt/vpsie-autoscaler/site-packages \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/vpsie-autoscaler /opt/vpsie-autoscaler
USER 65532:65532
# Exec form: Python is PID 1 and receives SIGTERM for the graceful shutdown.
ENTRYPOINT ["python3", "-m", "vpsie_autoscaler"]
CMD ["run"]
