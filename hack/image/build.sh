#!/usr/bin/env bash
# `make image`: build the vpsie-autoscaler image for linux/amd64 and linux/arm64 with buildah.
#
# No Docker engine and no buildx are needed: buildah (Debian package) runs the Dockerfile daemonless.
# Every step is cached, so a second run only rebuilds what changed:
#
#   1. tools   buildah, debootstrap, qemu-user-static (Debian packages) when missing; binfmt_misc for
#              arm64 binaries (needed only to bootstrap the arm64 stand-in base and to smoke-test it);
#   2. base    python:${PYTHON_VERSION}-slim per platform from Docker Hub; when the registry cannot be
#              reached, a stand-in: Debian trixie (Python 3.13, the Debian python:3.13-slim is built on)
#              bootstrapped with debootstrap into ~/.cache/vpsie-image/, trimmed and imported;
#   3. uv      ghcr.io/astral-sh/uv:${UV_VERSION}; stand-in: the same pinned uv the Makefile installs;
#   4. build   `buildah bud` per platform, amd64 first. The builder stage runs on the build platform and
#              resolves wheels for the target platform, so arm64 needs no emulation;
#   5. smoke   as UID 65532 in each image (arm64 through qemu-user-static): `vpsie-autoscaler version`
#              and an import of every compiled dependency;
#   6. sizes   compressed size per platform written to docs/image.md (target <= 60 MB).
#
# Environment: REGISTRY, IMAGE, VERSION, REVISION, CREATED (as in docker-bake.hcl), PLATFORMS
# (default "linux/amd64 linux/arm64"), VPSIE_IMAGE_CACHE (default ~/.cache/vpsie-image),
# FORCE_STANDIN_BASE=1 (skip the registry probe), BUILDAH_STORAGE_DRIVER (e.g. vfs), DEBIAN_MIRROR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# The pins: python:3.13-slim is the Dockerfile's default base; trixie is the Debian release it is built
# on (and ships Python 3.13); uv is the version the Makefile bootstraps (one pin for both).
PYTHON_VERSION="3.13"
DEBIAN_SUITE="trixie"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
UV_VERSION="$(sed -n 's/^UV_VERSION := //p' Makefile)"
REGISTRY="${REGISTRY:-ghcr.io/vpsie}"
IMAGE="${IMAGE:-vpsie-autoscaler}"
VERSION="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)}"
REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
CREATED="${CREATED:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
CACHE="${VPSIE_IMAGE_CACHE:-$HOME/.cache/vpsie-image}"
# Bump when the stand-in recipe below changes: the cached rootfs and base images are rebuilt.
STANDIN_RECIPE=4
REGISTRY_PROBE_SECONDS=20
# The runtime dependencies with compiled extensions, imported in each image by the smoke test.
# The Kubernetes adapter first: it installs its lazy kubernetes_asyncio packages, which read the
# packages' __init__ sources.
IMPORT_CHECK="from vpsie_autoscaler.kube import KubeClient
import kubernetes_asyncio.client, kubernetes_asyncio.config
assert kubernetes_asyncio.client.ApiClient and kubernetes_asyncio.client.V1Pod
import aiohttp, frozenlist, multidict, orjson, propcache, pydantic_core, yaml, yarl
import prometheus_client, pydantic_settings, structlog
assert yaml.__with_libyaml__, 'PyYAML without libyaml'
print('imports ok')"

# buildah's default storage (overlay where the kernel allows it); BUILDAH_STORAGE_DRIVER=vfs works
# everywhere. Containers run with chroot isolation, which needs no user namespaces or cgroups.
BUILDAH=(buildah)
if [[ -n "${BUILDAH_STORAGE_DRIVER:-}" ]]; then
    BUILDAH+=(--storage-driver "$BUILDAH_STORAGE_DRIVER")
fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

host_arch() { dpkg --print-architecture; }

ensure_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [[ -x /usr/bin/qemu-aarch64-static || "$(host_arch)" == arm64 ]] || missing+=(qemu-user-static binfmt-support)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (Debian packages)"
        if [[ $EUID -ne 0 ]]; then
            echo "need root to apt-get install ${missing[*]}; install them and run again" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# Foreign-architecture binaries run through binfmt_misc + qemu-user-static (registered with the F flag,
# so the interpreter also works inside a chroot).
ensure_binfmt() {
    local arch="$1" qarch
    [[ "$arch" == "$(host_arch)" ]] && return 0
    case "$arch" in
        arm64) qarch=aarch64 ;;
        amd64) qarch=x86_64 ;;
        *) echo "unsupported architecture $arch" >&2; exit 1 ;;
    esac
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [[ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qarch" ]]; then
        update-binfmts --enable "qemu-$qarch"
    fi
}

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# --- 2. base image -----------------------------------------------------------------------------------

upstream_base() { echo "docker.io/library/python:${PYTHON_VERSION}-slim"; }
standin_base() { echo "localhost/vpsie-standin/python:${PYTHON_VERSION}-slim-$1"; }

# A multi-platform tag resolves to one image in local storage: each platform's pull gets its own tag.
local_upstream_base() { echo "localhost/vpsie-upstream/python:${PYTHON_VERSION}-slim-$1"; }

# Pull the upstream base for one architecture; false (quickly) when the registry is unreachable.
pull_upstream_base() {
    local arch="$1"
    [[ "${USE_STANDIN:-0}" == 1 ]] && return 1
    timeout "$REGISTRY_PROBE_SECONDS" "${BUILDAH[@]}" pull --quiet --arch "$arch" --os linux \
        "$(upstream_base)" >/dev/null 2>&1 || return 1
    "${BUILDAH[@]}" tag "$(upstream_base)" "$(local_upstream_base "$arch")"
}

# Debian trixie minbase + python3 and the runtime packages python:*-slim installs (ca-certificates,
# netbase, tzdata), trimmed the way python:*-slim is (no docs, man pages, locales, package caches),
# with Python on PATH as `python3` like the upstream image.
bootstrap_rootfs() {
    local arch="$1" dir="$CACHE/rootfs-$DEBIAN_SUITE-$1"
    local stamp="$dir.stamp" want="suite=$DEBIAN_SUITE recipe=$STANDIN_RECIPE"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    log "debootstrap $DEBIAN_SUITE ($arch) into $dir"
    rm -rf "$dir" "$stamp"
    mkdir -p "$CACHE"
    ensure_binfmt "$arch"
    debootstrap --arch="$arch" --variant=minbase --include=python3,ca-certificates,netbase,tzdata \
        "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" >"$CACHE/debootstrap-$arch.log" 2>&1 || {
        tail -n 30 "$CACHE/debootstrap-$arch.log" >&2
        exit 1
    }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
        "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/usr/share/locale/* "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.cache
    echo "$want" >"$stamp"
}

import_standin_base() {
    local arch="$1" tag ctr mnt
    tag="$(standin_base "$arch")"
    local stamp="$CACHE/rootfs-$DEBIAN_SUITE-$arch.stamp"
    if image_exists "$tag" && [[ "$("${BUILDAH[@]}" inspect --type image \
        --format '{{index .ImageAnnotations "io.vpsie.standin.recipe"}}' "$tag")" == "$(cat "$stamp")" ]]; then
        return 0
    fi
    log "importing $tag"
    ctr="$("${BUILDAH[@]}" from --arch "$arch" --os linux scratch)"
    mnt="$("${BUILDAH[@]}" mount "$ctr")"
    cp -a "$CACHE/rootfs-$DEBIAN_SUITE-$arch/." "$mnt/"
    "${BUILDAH[@]}" umount "$ctr" >/dev/null
    "${BUILDAH[@]}" config --arch "$arch" --os linux \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["python3"]' \
        --annotation "io.vpsie.standin.recipe=$(cat "$stamp")" \
        --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE minbase + python3, stand-in for python:${PYTHON_VERSION}-slim" \
        "$ctr"
    "${BUILDAH[@]}" commit --quiet --rm --format oci "$ctr" "$tag" >/dev/null
}

# Prints the image reference to use as the base for one architecture.
resolve_base() {
    local arch="$1"
    if pull_upstream_base "$arch"; then
        local_upstream_base "$arch"
        return 0
    fi
    bootstrap_rootfs "$arch"
    import_standin_base "$arch"
    standin_base "$arch"
}

# --- 3. uv -------------------------------------------------------------------------------------------

upstream_uv() { echo "ghcr.io/astral-sh/uv:$UV_VERSION"; }
standin_uv() { echo "localhost/vpsie-standin/uv:$UV_VERSION"; }

resolve_uv() {
    if [[ "${USE_STANDIN:-0}" != 1 ]] && timeout "$REGISTRY_PROBE_SECONDS" \
        "${BUILDAH[@]}" pull --quiet "$(upstream_uv)" >/dev/null 2>&1; then
        upstream_uv
        return 0
    fi
    local tag ctr uvbin
    tag="$(standin_uv)"
    if ! image_exists "$tag"; then
        # The Makefile's pinned uv (PyPI wheel) is the same binary the upstream image ships at /uv.
        make --no-print-directory .tools/venv/bin/uv >/dev/null
        uvbin="$ROOT/.tools/venv/bin/uv"
        [[ "$("$uvbin" --version)" == "uv $UV_VERSION"* ]] || { echo "uv pin mismatch" >&2; exit 1; }
        log "importing $tag from $uvbin"
        ctr="$("${BUILDAH[@]}" from scratch)"
        "${BUILDAH[@]}" copy --quiet --chmod 0755 "$ctr" "$uvbin" /uv >/dev/null
        "${BUILDAH[@]}" commit --quiet --rm --format oci "$ctr" "$tag" >/dev/null
    fi
    echo "$tag"
}

# --- 4. build ----------------------------------------------------------------------------------------

build_one() {
    local platform="$1" arch="${1#linux/}" base builder uv tag
    base="$(resolve_base "$arch")"
    builder="$(resolve_base "$(host_arch)")"
    uv="$2"
    tag="$REGISTRY/$IMAGE:$VERSION-$arch"
    # RUN steps trust the build machine's CA store (it may hold an egress proxy's CA); the mount exists
    # only while RUN executes and never lands in a layer.
    local volumes=()
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] && volumes=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
    log "buildah bud $platform -> $tag"
    # Every base is already in local storage (pulled or imported above): never pull during the build.
    # buildah 1.28 does not predefine BUILDPLATFORM, so it is passed like BuildKit would set it.
    "${BUILDAH[@]}" bud --isolation chroot --format oci --layers --pull-never "${volumes[@]}" \
        --platform "$platform" \
        --build-arg "BUILDPLATFORM=linux/$(host_arch)" \
        --build-arg "PYTHON_IMAGE=$base" \
        --build-arg "BUILDER_IMAGE=$builder" \
        --build-arg "UV_IMAGE=$uv" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$REVISION" \
        --build-arg "CREATED=$CREATED" \
        --tag "$tag" \
        --file Dockerfile . >&2
    # buildah 1.28 leaves the working container of an instruction-less stage (uv) behind.
    "${BUILDAH[@]}" containers --quiet --filter "ancestor=$uv" | xargs -r "${BUILDAH[@]}" rm >/dev/null
    echo "$tag"
}

# --- 5. smoke test -----------------------------------------------------------------------------------

smoke_in() {
    local ctr="$1" out
    out="$("${BUILDAH[@]}" run --isolation chroot --user 65532:65532 "$ctr" -- \
        python3 -m vpsie_autoscaler version)" || return 1
    echo "$out"
    [[ "$out" == "vpsie-autoscaler $VERSION "* ]] || { echo "unexpected version output: $out" >&2; return 1; }
    # Every compiled extension must load on the image's architecture (a wheel for the wrong platform
    # would only fail here, or in production).
    "${BUILDAH[@]}" run --isolation chroot --user 65532:65532 "$ctr" -- python3 -c "$IMPORT_CHECK" || return 1
    out="$("${BUILDAH[@]}" run --isolation chroot --user 65532:65532 "$ctr" -- id -u)" || return 1
    [[ "$out" == 65532 ]] || { echo "runs as UID $out, want 65532" >&2; return 1; }
}

smoke() {
    local tag="$1" arch="$2" ctr rc=0
    ensure_binfmt "$arch"
    ctr="$("${BUILDAH[@]}" from --quiet --pull-never "$tag")"
    smoke_in "$ctr" || rc=$?
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    return "$rc"
}

# --- report ------------------------------------------------------------------------------------------

write_notes() {
    local base
    if [[ "$USE_STANDIN" == 1 ]]; then
        base="a stand-in for \`python:${PYTHON_VERSION}-slim\`: the registry could not be reached from the
  build machine, so \`hack/image/build.sh\` bootstrapped Debian $DEBIAN_SUITE (minbase + python3,
  ca-certificates, netbase, tzdata; docs, man pages and locales removed) with debootstrap and
  imported it per platform. The official image is built on the same Debian release with the same
  runtime packages but compiles its own Python into /usr/local; expect its base layers to be within
  a few MB of these."
    else
        base="\`$(upstream_base)\` pulled from Docker Hub."
    fi
    cat >"$1" <<NOTES
## How it is built

- Base: $base
- Builder stage on the build platform (linux/$(host_arch)): \`uv export --frozen --no-dev\` from
  \`uv.lock\`, then \`uv pip install --python-platform <arch>-manylinux_2_28 --only-binary :all:
  --require-hashes --target\`, so arm64 wheels are resolved without emulation; \`.pyi\` stubs
  deleted; bytecode compiled (\`unchecked-hash\`, valid on a read-only root filesystem).
- Smoke test per image, as UID 65532: \`vpsie-autoscaler version\`, and an import of every
  dependency with compiled extensions (proves the wheels match the image's architecture).
- Final stage: the base plus one \`COPY\` of \`/opt/vpsie-autoscaler\` (no RUN), \`USER 65532:65532\`,
  \`ENTRYPOINT ["python3", "-m", "vpsie_autoscaler"]\`.
- arm64 images run through qemu-user-static for the smoke test only; the build itself runs no
  arm64 code.

The application layer is ~12.5 MiB compressed. kubernetes_asyncio is the bulk of it; its generated
API and model classes ship as bytecode only (that saved 1.2 MB compressed). Further levers if a
release outgrows the budget: the other dependencies sourceless too (~1.3 MB), or the opt-in
\`gcr.io/distroless/python3-debian13\` base (Python 3.13, no shell or package manager, UID 65532
\`nonroot\`), whose base is smaller than python:*-slim (not measured here: it cannot be pulled).

\`make image-check\` goes one step further on the local control plane: the amd64 image's
\`vpsie-autoscaler run\`, as UID 65532 with a token of the Helm chart's ServiceAccount, must take the
leader Lease and answer \`/readyz\`.

Rebuild with \`make image\` (\`PLATFORMS="linux/amd64"\` for one platform). The base root
filesystems are cached in \`~/.cache/vpsie-image/\`; bootstrapping them on a cold cache takes a few
minutes (arm64 runs debootstrap's second stage under qemu-user-static), a rebuild well under a minute.
NOTES
}

# --- main --------------------------------------------------------------------------------------------

main() {
    ensure_tools
    # One probe decides for the whole run: either the registries answer or every base is a stand-in.
    USE_STANDIN="${FORCE_STANDIN_BASE:-0}"
    if [[ "$USE_STANDIN" != 1 ]] && ! pull_upstream_base "$(host_arch)"; then
        log "$(upstream_base) cannot be pulled: using debootstrapped stand-ins"
        USE_STANDIN=1
    fi
    export USE_STANDIN
    local uv tags=() platform tag arch report=()
    uv="$(resolve_uv)"
    for platform in $PLATFORMS; do
        tag="$(build_one "$platform" "$uv")"
        arch="${platform#linux/}"
        log "smoke test $tag as UID 65532"
        smoke "$tag" "$arch"
        tags+=("$tag")
        report+=("$platform=$tag")
    done
    log "measuring compressed sizes"
    rm -rf "$CACHE/oci"
    mkdir -p "$CACHE/oci"
    for platform in $PLATFORMS; do
        arch="${platform#linux/}"
        "${BUILDAH[@]}" push --quiet --format oci "$REGISTRY/$IMAGE:$VERSION-$arch" \
            "oci:$CACHE/oci/$arch:latest" >/dev/null
    done
    local py=python3
    [[ -x .venv/bin/python ]] && py=.venv/bin/python
    write_notes "$CACHE/notes.md"
    "$py" -m hack.image.sizes --oci-root "$CACHE/oci" --output docs/image.md \
        --version "$VERSION" --revision "$REVISION" --notes "$CACHE/notes.md" "${report[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
