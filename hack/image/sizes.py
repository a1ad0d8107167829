"""Measure what an image costs to pull and write the numbers to ``docs/image.md``.

Registries store layers gzip-compressed, so the pull size of an image is the sum of its compressed
layer blobs plus the config. ``buildah push`` to an ``oci:`` layout may keep layers uncompressed, so
each uncompressed layer is gzipped here at the level containers/image and Docker use (Go's
``compress/gzip`` default, 6); already-compressed blobs are counted as they are.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

# Go's gzip.DefaultCompression, what `docker push` / `buildah push` use for registry layers.
GZIP_LEVEL = 6
CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
MIB = 1024 * 1024
MB = 1000 * 1000
# The budget (decimal megabytes, the stricter reading): a node autoscaler must start fast on a fresh
# node. 58.4 MB on a python:*-slim base; the distroless base brought it under 50.
TARGET_COMPRESSED_MB = 50.0


@dataclass(frozen=True)
class LayerSize:
    digest: str
    uncompressed: int
    compressed: int


@dataclass(frozen=True)
class ImageSize:
    platform: str
    reference: str
    config_bytes: int
    layers: tuple[LayerSize, ...]

    @property
    def compressed(self) -> int:
        return self.config_bytes + sum(layer.compressed for layer in self.layers)

    @property
    def uncompressed(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def _gzip_size(path: Path) -> tuple[int, int]:
    """(uncompressed, compressed) sizes of one layer blob."""
    with path.open("rb") as f:
        head = f.read(len(GZIP_MAGIC))
    if head == GZIP_MAGIC:
        uncompressed = 0
        with gzip.open(path, "rb") as g:
            while chunk := g.read(CHUNK_BYTES):
                uncompressed += len(chunk)
        return uncompressed, path.stat().st_size
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    compressed = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            compressed += len(compressor.compress(chunk))
    compressed += len(compressor.flush())
    return path.stat().st_size, compressed


def measure(layout: Path, platform: str, reference: str) -> ImageSize:
    """Sizes of the single image in an OCI layout directory (``buildah push ... oci:<layout>``)."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        raise ValueError(f"{layout}: expected one manifest in index.json, found {len(manifests)}")
    manifest = json.loads(_blob(layout, manifests[0]["digest"]).read_text())
    layers = []
    for layer in manifest["layers"]:
        uncompressed, compressed = _gzip_size(_blob(layout, layer["digest"]))
        layers.append(LayerSize(layer["digest"], uncompressed, compressed))
    return ImageSize(platform, reference, int(manifest["config"]["size"]), tuple(layers))


def _mib(n: int) -> str:
    return f"{n / MIB:.1f}"


def _mb(n: int) -> str:
    return f"{n / MB:.1f}"


def within_target(image: ImageSize) -> bool:
    return image.compressed <= TARGET_COMPRESSED_MB * MB


def _block_marks(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def blocks(text: str) -> dict[str, str]:
    """The marked blocks of a page (``<!-- name:begin -->`` ... ``<!-- name:end -->``), marks included.

    Other tools write them (``make image-reproducible``): a new size report keeps them.
    """
    pattern = re.compile(r"^<!-- (\w[\w-]*):begin -->\n.*?^<!-- \1:end -->\n", re.DOTALL | re.MULTILINE)
    return {m.group(1): m.group(0) for m in pattern.finditer(text)}


def block_content(block: str) -> str:
    """What a block holds between its marks."""
    return block.split("\n", 1)[1].rsplit("\n<!-- ", 1)[0]


def set_block(text: str, name: str, content: str) -> str:
    """``text`` with block ``name`` replaced by ``content`` (appended when it has none)."""
    begin, end = _block_marks(name)
    block = f"{begin}\n{content.rstrip()}\n{end}\n"
    existing = blocks(text).get(name)
    if existing is not None:
        return text.replace(existing, block)
    return text.rstrip("\n") + "\n\n" + block


def render(images: list[ImageSize], *, version: str, revision: str, date: str) -> str:
    """The ``docs/image.md`` page: one row per platform, then the per-layer split."""
    lines = [
        "# Container image",
        "",
        "Built by `make image` (`hack/image/build.sh`: buildah, both platforms, smoke-tested as UID",
        "65532; no shell, package manager or pip). Compressed = what a node pulls: gzip (level 6) layers",
        f"plus the config. Target: at most {TARGET_COMPRESSED_MB:.0f} MB (10^6 bytes) compressed.",
        "",
        f"Measured on {date} for version `{version}`, revision `{revision[:12]}`.",
        "",
        "| platform | image | layers | uncompressed (MiB) | compressed (MiB) | compressed (MB)"
        " | within target |",
        "|---|---|---|---|---|---|---|",
    ]
    for image in images:
        ok = "yes" if within_target(image) else "**no**"
        lines.append(
            f"| {image.platform} | `{image.reference}` | {len(image.layers)} | {_mib(image.uncompressed)}"
            f" | {_mib(image.compressed)} | {_mb(image.compressed)} | {ok} |"
        )
    lines += [
        "",
        "Per layer (the first is the runtime base, the last the application: dependencies and the",
        "package, with bytecode):",
        "",
        "| platform | layer | uncompressed (MiB) | compressed (MiB) |",
        "|---|---|---|---|",
    ]
    for image in images:
        for layer in image.layers:
            lines.append(
                f"| {image.platform} | `{layer.digest[:19]}` | {_mib(layer.uncompressed)}"
                f" | {_mib(layer.compressed)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--oci-root", type=Path, help="holds one OCI layout per arch")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--version")
    parser.add_argument("--revision")
    parser.add_argument("--date", default=datetime.datetime.now(datetime.UTC).date().isoformat())
    parser.add_argument("--notes", type=Path, help="markdown appended verbatim (how the base was made)")
    parser.add_argument(
        "--set-block", nargs=2, metavar=("NAME", "FILE"), help="only set one marked block of --output"
    )
    parser.add_argument("images", nargs="*", metavar="PLATFORM=REFERENCE")
    args = parser.parse_args(argv)
    previous = args.output.read_text() if args.output.exists() else ""
    if args.set_block is not None:
        name, content = args.set_block
        args.output.write_text(set_block(previous, name, Path(content).read_text()))
        return 0
    if not (args.images and args.oci_root and args.version and args.revision):
        parser.error("PLATFORM=REFERENCE, --oci-root, --version and --revision are required")
    images = []
    for item in args.images:
        platform, _, reference = item.partition("=")
        images.append(measure(args.oci_root / platform.removeprefix("linux/"), platform, reference))
    text = render(images, version=args.version, revision=args.revision, date=args.date)
    if args.notes is not None:
        text += "\n" + args.notes.read_text()
    for name, block in blocks(previous).items():
        text = set_block(text, name, block_content(block))
    args.output.write_text(text)
    for image in images:
        print(
            f"{image.platform}: {_mb(image.compressed)} MB ({_mib(image.compressed)} MiB) compressed,"
            f" {_mib(image.uncompressed)} MiB uncompressed"
        )
        if not within_target(image):
            print(f"WARNING: {image.platform} exceeds the {TARGET_COMPRESSED_MB:.0f} MB target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
