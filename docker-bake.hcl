# docker buildx bake: `docker buildx bake` builds image-local (one platform, loaded into the local
# engine); `docker buildx bake image` builds linux/amd64 + linux/arm64 and pushes tags set by
# docker/metadata-action. Without Docker, `make image` builds the same Dockerfile with buildah.
# Reproducible: buildx passes SOURCE_DATE_EPOCH from the environment as a build argument (set it to
# the commit time, `git log -1 --format=%ct`, and add `rewrite-timestamp=true` to the output).

variable "REGISTRY" {
  default = "ghcr.io/vpsie"
}

variable "IMAGE" {
  default = "vpsie-autoscaler"
}

variable "VERSION" {
  default = "dev"
}

# Git commit and build time for the OCI labels; CI sets them (or metadata-action overrides the labels).
variable "REVISION" {
  default = "unknown"
}

variable "CREATED" {
  default = "unknown"
}

# The runtime base, pinned by digest (the Dockerfile's default; see there how to bump it).
variable "PYTHON_IMAGE" {
  default = "gcr.io/distroless/python3-debian13:nonroot@sha256:614040f7f08b3f0dca943ea54eae94ea555ea2b9ca83d1acda1b7e4238ce91fb"
}

# Overwritten by docker/metadata-action in CI (tags and labels); empty for local builds.
target "docker-metadata-action" {}

target "_common" {
  context    = "."
  dockerfile = "Dockerfile"
  target     = "runtime"
  args = {
    PYTHON_IMAGE = PYTHON_IMAGE
    VERSION      = VERSION
    REVISION     = REVISION
    CREATED      = CREATED
  }
  labels = {
    "org.opencontainers.image.title"       = "vpsie-autoscaler"
    "org.opencontainers.image.description" = "Kubernetes node autoscaler for the VPSie cloud"
    "org.opencontainers.image.source"      = "https://github.com/vpsie/vpsie-autoscaler"
    "org.opencontainers.image.url"         = "https://github.com/vpsie/vpsie-autoscaler"
    "org.opencontainers.image.version"     = VERSION
    "org.opencontainers.image.revision"    = REVISION
    "org.opencontainers.image.created"     = CREATED
    "org.opencontainers.image.licenses"    = "Apache-2.0"
    "org.opencontainers.image.vendor"      = "VPSie"
  }
  tags = ["${REGISTRY}/${IMAGE}:${VERSION}"]
}

# One platform (the builder's), loaded into the local engine for tests and kind/k3d clusters.
target "image-local" {
  inherits = ["_common"]
  output   = ["type=docker"]
}

# The release image: both platforms, with provenance and SBOM attestations. CI adds its cache with
# `--set image.cache-from=... --set image.cache-to=...` so the file also builds outside CI.
target "image" {
  inherits  = ["_common", "docker-metadata-action"]
  platforms = ["linux/amd64", "linux/arm64"]
  attest = [
    "type=provenance,mode=max",
    "type=sbom",
  ]
}

# Dockerfile build checks only (`docker buildx bake lint`).
target "lint" {
  inherits = ["_common"]
  call     = "check"
}

group "default" {
  targets = ["image-local"]
}
