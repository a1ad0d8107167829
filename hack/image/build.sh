#!/usr/bin/env bash
# `make image`: build the vpsie-autoscaler image for linux/amd64 and linux/arm64 with buildah.
# `hack/image/build.sh reproduce` (`make image-reproducible`): build twice from scratch, same digest.
#
# No Docker engine and no buildx are needed: buildah (Debian package) runs the Dockerfile daemonless.
# Every step is cached, so a second run only rebuilds what changed:
#
#   1. tools   buildah, debootstrap, qemu-user-static (Debian packages) when missing; binfmt_misc for
#              arm64 binaries (needed only to bootstrap the arm64 package root and to smoke-test it);
#   2. bases   the Dockerfile's digest-pinned bases (distroless python3-debian13 to run, python:3.13-slim
#              to build) per platform; when the registry cannot be reached, stand-ins made from the
#              same Debian trixie packages: debootstrap installs them into ~/.cache/vpsie-image/ (the
#              builder), and hack/image/rootfs.py copies the runtime's packages out of that root, with
#              no shell, package manager or pip (the runtime base);
#   3. uv      ghcr.io/astral-sh/uv:${UV_VERSION}; stand-in: the same pinned uv the Makefile installs;
#   4. build   `buildah bud --timestamp $SOURCE_DATE_EPOCH` per platform, amd64 first. The builder stage
#              runs on the build platform and resolves wheels for the target platform, so arm64 needs no
#              emulation;
#   5. smoke   as UID 65532 in each image (arm64 through qemu-user-static): `vpsie-autoscaler version`,
#              an import of every compiled dependency, the CA bundle; and no shell, apt, dpkg or pip;
#   6. sizes   compressed size per platform written to docs/image.md (target <= 50 MB).
#
# Environment: REGISTRY, IMAGE, VERSION, REVISION, CREATED (as in docker-bake.hcl), SOURCE_DATE_EPOCH
# (default: the commit time of HEAD), PLATFORMS (default "linux/amd64 linux/arm64"),
# VPSIE_IMAGE_CACHE (default ~/.cache/vpsie-image), FORCE_STANDIN_BASE=1 (skip the registry probe),
# BUILDAH_STORAGE_DRIVER (e.g. vfs), DEBIAN_MIRROR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# The pins: the Dockerfile's digest-pinned bases (one source of truth); trixie is the Debian release
# both are built on (and ships Python 3.13); uv is the version the Makefile bootstraps.
PYTHON_VERSION="3.13"
dockerfile_arg() { sed -n "s/^ARG $1=//p" Dockerfile; }
DEBIAN_SUITE="trixie"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
UV_VERSION="$(sed -n 's/^UV_VERSION := //p' Makefile)"
REGISTRY="${REGISTRY:-ghcr.io/vpsie}"
IMAGE="${IMAGE:-vpsie-autoscaler}"
VERSION="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)}"
REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
# Every timestamp in the image (files, history, config, the created label) is this one: the same
# sources give the same digest whenever and wherever they are built.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
CREATED="${CREATED:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
CACHE="${VPSIE_IMAGE_CACHE:-$HOME/.cache/vpsie-image}"
# Bump when the stand-in recipe below changes: the cached rootfs and base images are rebuilt.
STANDIN_RECIPE=4
# Bump when the runtime root recipe (hack/image/rootfs.py, compile_stdlib) changes.
RUNTIME_RECIPE=1
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
import ssl
assert ssl.create_default_context().cert_store_stats()['x509_ca'] > 100, 'no CA bundle'
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

# Two bases per platform: "runtime" (the image's, distroless) and "builder" (python:3.13-slim, only for
# the build platform). Upstream they are the Dockerfile's digest-pinned defaults.
upstream_ref() {
    case "$1" in
        runtime) dockerfile_arg PYTHON_IMAGE ;;
        builder) dockerfile_arg BUILDER_IMAGE ;;
    esac
}
standin_ref() {
    case "$1" in
        runtime) echo "localhost/vpsie-standin/python3-debian13:nonroot-$2" ;;
        builder) echo "localhost/vpsie-standin/python:${PYTHON_VERSION}-slim-$2" ;;
    esac
}

# A multi-platform reference resolves to one image in local storage: each platform's pull gets its tag.
local_upstream_ref() { echo "localhost/vpsie-upstream/$1:$2"; }

# Pull one upstream base for one architecture; false (quickly) when the registry is unreachable.
pull_upstream() {
    local kind="$1" arch="$2"
    [[ "${USE_STANDIN:-0}" == 1 ]] && return 1
    timeout "$REGISTRY_PROBE_SECONDS" "${BUILDAH[@]}" pull --quiet --arch "$arch" --os linux \
        "$(upstream_ref "$kind")" >/dev/null 2>&1 || return 1
    "${BUILDAH[@]}" tag "$(upstream_ref "$kind")" "$(local_upstream_ref "$kind" "$arch")"
}

# Debian trixie minbase + python3 and the runtime packages (ca-certificates, netbase, tzdata), trimmed
# the way python:*-slim is (no docs, man pages, locales, package caches). It is the builder stand-in
# and the package root the runtime base is copied from.
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

# The standard library's bytecode, compiled like the application's (unchecked-hash: valid whatever the
# file times, never rewritten on the read-only root) by the same Debian interpreter, in the build
# platform's package root (bytecode does not depend on the architecture).
compile_stdlib() {
    local root="$1" host_root="$CACHE/rootfs-$DEBIAN_SUITE-$(host_arch)"
    local lib="usr/lib/python$PYTHON_VERSION" work="tmp/vpsie-stdlib"
    rm -rf "${host_root:?}/$work"
    cp -a "$root/$lib" "$host_root/$work"
    chroot "$host_root" "/usr/bin/python$PYTHON_VERSION" -m compileall -q -j 1 \
        --invalidation-mode unchecked-hash -s "/$work" -p "/$lib" "/$work" >&2
    (cd "$host_root/$work" && find . -type d -name __pycache__ -prune -print0) |
        while IFS= read -r -d '' d; do cp -a "$host_root/$work/$d" "$root/$lib/$d"; done
    rm -rf "${host_root:?}/$work"
}

# The runtime base stand-in: the runtime's packages copied out of the package root (no shell, package
# manager or pip), the standard library compiled, committed with the packages' own newest file time so
# its digest depends only on the package versions.
runtime_rootfs() {
    local arch="$1" dir="$CACHE/runtime-$DEBIAN_SUITE-$1"
    local want
    want="recipe=$RUNTIME_RECIPE source=$(cat "$CACHE/rootfs-$DEBIAN_SUITE-$arch.stamp")"
    want+=" tool=$(sha256sum hack/image/rootfs.py | cut -c1-16)"
    if [[ "${FRESH_RUNTIME_ROOT:-0}" != 1 && -f "$dir.stamp" && "$(cat "$dir.stamp")" == "$want" ]]; then
        return 0
    fi
    log "assembling the runtime root ($arch) in $dir"
    rm -rf "$dir" "$dir.stamp"
    mkdir -p "$dir"
    "$(host_python)" -m hack.image.rootfs --source "$CACHE/rootfs-$DEBIAN_SUITE-$arch" --dest "$dir/root" \
        --manifest "$dir/packages.txt" --epoch "$dir/epoch"
    compile_stdlib "$dir/root"
    echo "$want" >"$dir.stamp"
}

import_rootfs() {
    local tag="$1" arch="$2" dir="$3" epoch="$4" want="$5" ctr mnt
    shift 5
    if image_exists "$tag" && [[ "$("${BUILDAH[@]}" inspect --type image \
        --format '{{index .ImageAnnotations "io.vpsie.standin.recipe"}}' "$tag")" == "$want" ]]; then
        return 0
    fi
    log "importing $tag"
    ctr="$("${BUILDAH[@]}" from --arch "$arch" --os linux scratch)"
    mnt="$("${BUILDAH[@]}" mount "$ctr")"
    cp -a "$dir/." "$mnt/"
    "${BUILDAH[@]}" umount "$ctr" >/dev/null
    "${BUILDAH[@]}" config --arch "$arch" --os linux \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --annotation "io.vpsie.standin.recipe=$want" "$@" "$ctr"
    "${BUILDAH[@]}" commit --quiet --rm --format oci --identity-label=false --timestamp "$epoch" \
        "$ctr" "$tag" >/dev/null
}

import_standin() {
    local kind="$1" arch="$2"
    case "$kind" in
        builder)
            bootstrap_rootfs "$arch"
            import_rootfs "$(standin_ref builder "$arch")" "$arch" "$CACHE/rootfs-$DEBIAN_SUITE-$arch" \
                "$SOURCE_DATE_EPOCH" "$(cat "$CACHE/rootfs-$DEBIAN_SUITE-$arch.stamp")" \
                --env LANG=C.UTF-8 --cmd '["python3"]' \
                --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE minbase + python3, stand-in for python:${PYTHON_VERSION}-slim"
            ;;
        runtime)
            bootstrap_rootfs "$arch"
            bootstrap_rootfs "$(host_arch)"
            runtime_rootfs "$arch"
            local dir="$CACHE/runtime-$DEBIAN_SUITE-$arch"
            # The configuration distroless's python3 :nonroot images have.
            import_rootfs "$(standin_ref runtime "$arch")" "$arch" "$dir/root" "$(cat "$dir/epoch")" \
                "$(cat "$dir.stamp")" \
                --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --env LANG=C.UTF-8 \
                --user 65532:65532 --workingdir /home/nonroot \
                --entrypoint "[\"/usr/bin/python$PYTHON_VERSION\"]" \
                --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE python$PYTHON_VERSION without shell, package manager or pip, stand-in for $(upstream_ref runtime)"
            ;;
    esac
}

# Prints the image reference to use as one base for one architecture.
resolve_base() {
    local kind="$1" arch="$2"
    if pull_upstream "$kind" "$arch"; then
        local_upstream_ref "$kind" "$arch"
        return 0
    fi
    import_standin "$kind" "$arch"
    standin_ref "$kind" "$arch"
}

host_python() {
    if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi
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

# build_one PLATFORM UV_IMAGE TAG CONTEXT [buildah bud options...]: prints TAG.
build_one() {
    local platform="$1" arch="${1#linux/}" uv="$2" tag="$3" context="$4" base builder
    shift 4
    base="$(resolve_base runtime "$arch")"
    builder="$(resolve_base builder "$(host_arch)")"
    # RUN steps trust the build machine's CA store (it may hold an egress proxy's CA); the mount exists
    # only while RUN executes and never lands in a layer.
    local volumes=()
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] && volumes=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
    log "buildah bud $platform -> $tag"
    # Every base is already in local storage (pulled or imported above): never pull during the build.
    # buildah 1.28 does not predefine BUILDPLATFORM, so it is passed like BuildKit would set it.
    # --timestamp: every file, the history and the config carry SOURCE_DATE_EPOCH (reproducible).
    "${BUILDAH[@]}" bud --isolation chroot --format oci --layers --pull-never "${volumes[@]}" "$@" \
        --platform "$platform" --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false \
        --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" \
        --build-arg "BUILDPLATFORM=linux/$(host_arch)" \
        --build-arg "PYTHON_IMAGE=$base" \
        --build-arg "BUILDER_IMAGE=$builder" \
        --build-arg "UV_IMAGE=$uv" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$REVISION" \
        --build-arg "CREATED=$CREATED" \
        --tag "$tag" \
        --file "$context/Dockerfile" "$context" >&2
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
    # would only fail here, or in production), and TLS must find the CA bundle.
    "${BUILDAH[@]}" run --isolation chroot --user 65532:65532 "$ctr" -- python3 -c "$IMPORT_CHECK" || return 1
    out="$("${BUILDAH[@]}" run --isolation chroot --user 65532:65532 "$ctr" -- \
        python3 -c 'import os; print(os.getuid())')" || return 1
    [[ "$out" == 65532 ]] || { echo "runs as UID $out, want 65532" >&2; return 1; }
    # No shell to exec into, no package manager or pip to change the image with.
    if "${BUILDAH[@]}" run --isolation chroot "$ctr" -- /bin/sh -c true >/dev/null 2>&1; then
        echo "the image has a shell" >&2
        return 1
    fi
    if "${BUILDAH[@]}" run --isolation chroot "$ctr" -- python3 -m pip --version >/dev/null 2>&1; then
        echo "the image has pip" >&2
        return 1
    fi
    local mnt rc=0
    mnt="$("${BUILDAH[@]}" mount "$ctr")"
    "$(host_python)" -m hack.image.rootfs --check "$mnt" || rc=$?
    "${BUILDAH[@]}" umount "$ctr" >/dev/null
    return "$rc"
}

smoke() {
    local tag="$1" arch="$2" ctr rc=0
    ensure_binfmt "$arch"
    ctr="$("${BUILDAH[@]}" from --quiet --pull-never "$tag")"
    smoke_in "$ctr" || rc=$?
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    return "$rc"
}

# The image's digests: its ID (the config digest: every layer's content, the history, the labels) and
# the manifest digest of its OCI layout.
digests() {
    local tag="$1" layout="$2"
    printf 'id=%s manifest=%s\n' "$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$tag")" \
        "$("$(host_python)" -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
            "$layout/index.json")"
}

# "id=sha256:a manifest=sha256:b" -> "`sha256:a` | `sha256:b`" (two table cells).
digest_cells() {
    local id="${1%% *}" manifest="${1##* }"
    printf '`%s` | `%s`' "${id#id=}" "${manifest#manifest=}"
}

export_layout() {
    local tag="$1" layout="$2"
    rm -rf "$layout"
    mkdir -p "$(dirname "$layout")"
    "${BUILDAH[@]}" push --quiet --format oci "$tag" "oci:$layout:latest" >/dev/null
}

# --- report ------------------------------------------------------------------------------------------

write_notes() {
    local base packages=""
    if [[ "$USE_STANDIN" == 1 ]]; then
        base="a stand-in for \`$(upstream_ref runtime)\` (the registry could not be
  reached from the build machine), made the way distroless is: Debian $DEBIAN_SUITE packages, here
  installed by debootstrap into a package root and copied out of it by \`hack/image/rootfs.py\`: the
  dependency closure of python3.13-minimal, libpython3.13-stdlib, ca-certificates, netbase and tzdata
  without the packages that only configure or administer a system (dpkg, debconf, perl-base, bash,
  dash, coreutils, the openssl CLI...). Accounts (\`nonroot\` = 65532), \`nsswitch.conf\`, the CA
  bundle and OpenSSL's default paths to it, and each package's dpkg status in
  \`/var/lib/dpkg/status.d/\` (for scanners) are added; the standard library is compiled to bytecode.
  Its timestamp is the newest file of its packages, so its digest depends only on their versions.
  Builder: the package root itself, stand-in for \`python:${PYTHON_VERSION}-slim\`. The digests the
  Dockerfile pins are the published ones for those tags; this machine cannot pull them, so the first
  registry build verifies them (a wrong digest fails the pull, it never builds on something else)."
        local arch first="" list
        for arch in $PLATFORMS; do
            arch="${arch#linux/}"
            list="$CACHE/runtime-$DEBIAN_SUITE-$arch/packages.txt"
            if [[ -z "$first" ]]; then
                first="$list"
                packages="
Runtime base packages (Debian $DEBIAN_SUITE, linux/$arch):

| package | version |
|---|---|
$(awk '{printf "| `%s` | %s |\n", $1, $2}' "$list")
"
            elif cmp -s "$first" "$list"; then
                packages+="
linux/$arch: the same packages and versions.
"
            else
                packages+="
linux/$arch differs: $(diff "$first" "$list" | grep '^[<>]' | tr '\n' ';')
"
            fi
        done
    else
        base="\`$(upstream_ref runtime)\` (build stage: \`$(upstream_ref builder)\`), pulled by digest."
    fi
    cat >"$1" <<NOTES
Before the distroless base: 58.4 MB compressed for linux/amd64 (Debian trixie minbase + python3 as
the runtime, with a shell, apt, dpkg and perl; revision \`521f59ed4908\`).

## How it is built

- Runtime base: $base
- Builder stage on the build platform (linux/$(host_arch)): \`uv export --frozen --no-dev\` from
  \`uv.lock\`, then \`uv pip install --python-platform <arch>-manylinux_2_28 --only-binary :all:
  --require-hashes --target\`, so arm64 wheels are resolved without emulation; \`.pyi\` stubs
  deleted; bytecode compiled (\`unchecked-hash\`, valid on a read-only root filesystem).
- Final stage: the base plus one \`COPY\` of \`/opt/vpsie-autoscaler\` (no RUN: there is no shell),
  \`USER 65532:65532\`, \`ENTRYPOINT ["python3", "-m", "vpsie_autoscaler"]\`.
- Smoke test per image, as UID 65532: \`vpsie-autoscaler version\`, an import of every dependency
  with compiled extensions (proves the wheels match the image's architecture), the CA bundle loads;
  \`/bin/sh\` and \`python3 -m pip\` must fail, and no \`sh\`, \`bash\`, \`dash\`, \`apt\`, \`dpkg\` or
  \`pip\` may exist anywhere in the image (\`python -m hack.image.rootfs --check\`).
- Reproducible: \`buildah bud --timestamp \$SOURCE_DATE_EPOCH\` (default: the commit time of HEAD)
  gives every file, the history, the config and the \`created\` label that one time; bytecode is
  compiled in one process (\`-j 1\`) and hash-based; no build-tool label. \`make image-reproducible\`
  proves it (below).
- arm64 images run through qemu-user-static for the smoke test only; the build itself runs no
  arm64 code.
$packages
\`make image-check\` goes one step further on the local control plane: the amd64 image's
\`vpsie-autoscaler run\`, as UID 65532 with a token of the Helm chart's ServiceAccount, must take the
leader Lease and answer \`/readyz\`. Debugging without a shell: \`kubectl debug --profile=general
--target=<container>\` adds an ephemeral container with tools next to it.

Rebuild with \`make image\` (\`PLATFORMS="linux/amd64"\` for one platform). The package roots are
cached in \`~/.cache/vpsie-image/\`; bootstrapping them on a cold cache takes a few minutes (arm64
runs debootstrap's second stage under qemu-user-static), a rebuild well under a minute.
NOTES
}

# --- reproducibility ---------------------------------------------------------------------------------

# Two builds of one commit from nothing (a clean export of the commit, the runtime root assembled anew
# from the package root, no layer cache) must give the same image ID and manifest digest.
reproduce() {
    local commit uv platform arch run ctx result="$CACHE/reproducible.md"
    # Resolved once: others may commit while the two builds run.
    commit="$(git rev-parse "${REPRODUCE_COMMIT:-HEAD}^{commit}")"
    REVISION="$commit"
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct "$commit")"
    CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
    uv="$(resolve_uv)"
    local lines=() ok=1
    for platform in $PLATFORMS; do
        arch="${platform#linux/}"
        local got=()
        for run in 1 2; do
            ctx="$(mktemp -d "${TMPDIR:-/tmp}/vpsie-image-repro.XXXXXX")"
            git archive "$commit" | tar -x -C "$ctx"
            if [[ "$USE_STANDIN" == 1 ]]; then
                FRESH_RUNTIME_ROOT=1 runtime_rootfs "$arch"
                "${BUILDAH[@]}" rmi "$(standin_ref runtime "$arch")" >/dev/null 2>&1 || true
            fi
            local tag="localhost/vpsie-repro/$IMAGE:$arch-$run"
            build_one "$platform" "$uv" "$tag" "$ctx" --no-cache >/dev/null
            rm -rf "$ctx"
            export_layout "$tag" "$CACHE/repro/$arch-$run"
            got+=("$(digests "$tag" "$CACHE/repro/$arch-$run")")
            log "$platform build $run: ${got[-1]}"
            "${BUILDAH[@]}" rmi "$tag" >/dev/null
        done
        local one two
        one="$(digest_cells "${got[0]}")"
        two="$(digest_cells "${got[1]}")"
        if [[ "${got[0]}" == "${got[1]}" ]]; then
            lines+=("| $platform | 1 and 2 | $one | yes |")
        else
            ok=0
            lines+=("| $platform | 1 | $one | **no** |" "| $platform | 2 | $two | **no** |")
        fi
    done
    {
        echo "Reproducibility, checked $(date -u +%Y-%m-%d) by \`make image-reproducible\`: commit"
        echo "\`${REVISION:0:12}\` built twice from a clean export, without layer cache, the runtime root"
        echo "assembled anew each time (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)."
        echo
        echo "| platform | build | image ID (config digest) | OCI manifest digest | identical |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${lines[@]}"
    } >"$result"
    "$(host_python)" -m hack.image.sizes --set-block reproducible "$result" --output docs/image.md
    cat "$result"
    [[ "$ok" == 1 ]]
}

# --- main --------------------------------------------------------------------------------------------

decide_standin() {
    # One probe decides for the whole run: either the registries answer or every base is a stand-in.
    USE_STANDIN="${FORCE_STANDIN_BASE:-0}"
    if [[ "$USE_STANDIN" != 1 ]] && ! pull_upstream runtime "$(host_arch)"; then
        log "$(upstream_ref runtime) cannot be pulled: using stand-ins made from Debian packages"
        USE_STANDIN=1
    fi
    export USE_STANDIN
}

main() {
    ensure_tools
    decide_standin
    if [[ "${1:-}" == reproduce ]]; then
        PLATFORMS="${PLATFORMS_REPRODUCE:-linux/amd64}"
        reproduce
        return
    fi
    local uv platform tag arch report=()
    uv="$(resolve_uv)"
    for platform in $PLATFORMS; do
        tag="$(build_one "$platform" "$uv" "$REGISTRY/$IMAGE:$VERSION-${platform#linux/}" "$ROOT")"
        arch="${platform#linux/}"
        log "smoke test $tag"
        smoke "$tag" "$arch"
        report+=("$platform=$tag")
    done
    log "measuring compressed sizes"
    rm -rf "$CACHE/oci"
    for platform in $PLATFORMS; do
        arch="${platform#linux/}"
        export_layout "$REGISTRY/$IMAGE:$VERSION-$arch" "$CACHE/oci/$arch"
        log "$platform: $(digests "$REGISTRY/$IMAGE:$VERSION-$arch" "$CACHE/oci/$arch")"
    done
    write_notes "$CACHE/notes.md"
    "$(host_python)" -m hack.image.sizes --oci-root "$CACHE/oci" --output docs/image.md \
        --version "$VERSION" --revision "$REVISION" --notes "$CACHE/notes.md" "${report[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
