"""The shell-less runtime root: which Debian packages it ships and how their files are copied.

``hack/image/rootfs.py`` decides the image's contents from a dpkg status file, so the decision is
tested on synthetic status files and package roots: no debootstrap, no buildah.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hack.image import rootfs


def _paragraph(name: str, depends: str = "", *, status: str = "install ok installed", **extra: str) -> str:
    lines = [f"Package: {name}", f"Status: {status}", "Architecture: amd64", f"Version: 1.0-{name}"]
    if depends:
        lines.append(f"Depends: {depends}")
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def _status(*paragraphs: str) -> dict[str, rootfs.Package]:
    return rootfs.parse_status("\n\n".join(paragraphs) + "\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("libc6 (>= 2.38)", (("libc6",),)),
        ("python3.13-minimal (= 3.13.5-2), libexpat1", (("python3.13-minimal",), ("libexpat1",))),
        ("media-types | mime-support", (("media-types", "mime-support"),)),
        ("python3:any (>= 3.5~)", (("python3",),)),
        ("libc6:amd64 [amd64], debconf (>= 0.5) | debconf-2.0", (("libc6",), ("debconf", "debconf-2.0"))),
    ],
)
def test_relations_are_package_names_as_dpkg_resolves_them(
    value: str, expected: tuple[tuple[str, ...], ...]
) -> None:
    assert rootfs.parse_relations(value) == expected


def test_status_keeps_installed_packages_and_both_dependency_fields() -> None:
    packages = _status(
        _paragraph("python3.13-minimal", "libc6", Pre_Depends="libssl3t64"),
        _paragraph("removed", status="deinstall ok config-files"),
        _paragraph("libc6"),
        _paragraph("libssl3t64"),
    )
    assert set(packages) == {"python3.13-minimal", "libc6", "libssl3t64"}
    assert packages["python3.13-minimal"].depends == (("libssl3t64",), ("libc6",))
    assert packages["python3.13-minimal"].paragraph.startswith("Package: python3.13-minimal\n")


SYSTEM = (
    _paragraph("python3-minimal", "python3.13-minimal, dpkg (>= 1.13.20)"),
    _paragraph("python3.13-minimal", "libc6, zlib1g"),
    _paragraph("libc6", "libgcc-s1"),
    _paragraph("libgcc-s1", "libc6"),
    _paragraph("zlib1g", "libc6"),
    _paragraph("dpkg", "tar, libc6"),
    _paragraph("tar", "libc6"),
    _paragraph("tzdata", "debconf (>= 0.5) | debconf-2.0"),
    _paragraph("debconf", "perl-base"),
    _paragraph("perl-base", "libc6"),
    _paragraph("ca-certificates", "openssl (>= 1.1.1), debconf"),
    _paragraph("openssl", "libssl3t64"),
    _paragraph("libssl3t64", "libc6"),
    _paragraph("libpython3.13-stdlib", "media-types | mime-support, libssl3t64"),
    _paragraph("mime-support"),
    _paragraph("media-types"),
    _paragraph("bash", "base-files"),
    _paragraph("base-files"),
)


def test_closure_ships_what_python_needs_and_none_of_the_administration() -> None:
    packages = _status(*SYSTEM)
    shipped = rootfs.closure(
        packages, ["python3-minimal", "libpython3.13-stdlib", "tzdata", "ca-certificates"], rootfs.DENY
    )
    assert shipped == [
        "ca-certificates",
        "libc6",
        "libgcc-s1",
        "libpython3.13-stdlib",
        "libssl3t64",
        "media-types",  # the first installed alternative, as dpkg chose it
        "python3-minimal",
        "python3.13-minimal",
        "tzdata",
        "zlib1g",
    ]
    # Denied packages are not entered: their own dependencies (tar, perl-base) stay out too.
    assert not {"dpkg", "tar", "debconf", "perl-base", "openssl", "bash"} & set(shipped)


def test_closure_follows_provides_and_refuses_a_broken_root() -> None:
    packages = _status(
        _paragraph("app", "mail-transport-agent"),
        _paragraph("postfix-lite", Provides="mail-transport-agent"),
        _paragraph("orphan", "missing-lib"),
    )
    assert rootfs.closure(packages, ["app"], frozenset()) == ["app", "postfix-lite"]
    with pytest.raises(ValueError, match="no installed package satisfies missing-lib"):
        rootfs.closure(packages, ["orphan"], frozenset())
    with pytest.raises(ValueError, match="root package 'nope' is not installed"):
        rootfs.closure(packages, ["nope"], frozenset())


NAMES = [f"p{i}" for i in range(8)]


@st.composite
def systems(draw: st.DrawFn) -> tuple[dict[str, rootfs.Package], list[str], frozenset[str]]:
    paragraphs = []
    for name in NAMES:
        groups = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2), max_size=3))
        paragraphs.append(_paragraph(name, ", ".join(" | ".join(group) for group in groups)))
    roots = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    deny = frozenset(draw(st.lists(st.sampled_from(NAMES), max_size=3)))
    return _status(*paragraphs), roots, deny


@given(systems())
def test_closure_is_closed_and_never_ships_a_denied_package(
    system: tuple[dict[str, rootfs.Package], list[str], frozenset[str]],
) -> None:
    packages, roots, deny = system
    shipped = set(rootfs.closure(packages, roots, deny))
    assert not shipped & deny
    assert set(roots) - deny <= shipped
    for name in shipped:
        for group in packages[name].depends:
            chosen = group[0]  # every synthetic package is installed: the first alternative wins
            assert chosen in shipped or chosen in deny, (name, group)


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        ("usr/bin/sh", True),
        ("usr/bin/bash", True),
        ("bin/dash", True),
        ("usr/bin/apt-get", True),
        ("usr/bin/dpkg", True),
        ("usr/local/bin/pip3", True),
        ("opt/app/site-packages/pip", True),
        ("usr/lib/python3/dist-packages/pip/__init__.py", True),
        ("usr/bin/python3.13", False),
        ("usr/share/bash-completion/completions/sh", False),
        ("usr/lib/python3.13/shlex.py", False),
        ("opt/app/site-packages/pipdeptree", False),
    ],
)
def test_forbidden_paths_are_shells_package_managers_and_pip(path: str, forbidden: bool) -> None:
    assert rootfs.forbidden_paths([path]) == ([path] if forbidden else [])


def _package_root(root: Path, files: dict[str, list[str]], depends: dict[str, str]) -> None:
    """A tiny usrmerged Debian root: each package's files exist and are listed in dpkg's info."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib64").symlink_to("usr/lib64")
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    for package, paths in files.items():
        for path in paths:
            target = root / path.lstrip("/")
            if path.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{package}:{path}\n")
        (info / f"{package}:amd64.list").write_text("/.\n" + "\n".join(p.rstrip("/") for p in paths) + "\n")
    (root / "var/lib/dpkg/status").write_text(
        "\n\n".join(_paragraph(name, depends.get(name, "")) for name in files) + "\n"
    )
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / rootfs.CA_BUNDLE).write_text("-----BEGIN CERTIFICATE-----\n")
    (root / "usr/lib/os-release").write_text('ID=debian\nVERSION_ID="13"\n')


ROOT_FILES = {
    "python3-minimal": ["/usr/bin/python3"],
    "python3.13-minimal": ["/usr/bin/python3.13", "/usr/share/doc/python3.13/copyright"],
    "libpython3.13-stdlib": ["/usr/lib/python3.13/", "/usr/lib/python3.13/os.py"],
    "libc6": ["/lib64/", "/lib64/ld-linux-x86-64.so.2"],
    "ca-certificates": ["/usr/share/ca-certificates/mozilla/Root.crt"],
    "netbase": ["/etc/services"],
    "tzdata": ["/usr/share/zoneinfo/UTC"],
    "dash": ["/bin/sh", "/usr/bin/dash"],
}
ROOT_DEPENDS = {
    "python3-minimal": "python3.13-minimal",
    "python3.13-minimal": "libc6",
    "libpython3.13-stdlib": "libc6",
    "ca-certificates": "debconf | dash",
}


def test_runtime_root_has_python_its_libraries_and_no_shell(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "dest"
    _package_root(source, ROOT_FILES, ROOT_DEPENDS)

    assert rootfs.main(["--source", str(source), "--dest", str(dest), "--manifest", str(tmp_path / "m")]) == 0

    assert (dest / "usr/bin/python3.13").read_text() == "python3.13-minimal:/usr/bin/python3.13\n"
    # usrmerge: /lib64 is a relative alias in the image too, so the ELF interpreter path resolves.
    assert os.readlink(dest / "lib64") == "usr/lib64"
    assert (dest / "lib64/ld-linux-x86-64.so.2").is_file()
    assert not (dest / "usr/bin/dash").exists()
    assert not (dest / "usr/bin/sh").exists()
    assert not (dest / "usr/share/doc").exists()
    assert "nonroot:x:65532:65532:" in (dest / "etc/passwd").read_text()
    assert (dest / "usr/lib/ssl/cert.pem").resolve() == (dest / rootfs.CA_BUNDLE).resolve()
    assert (dest / "var/lib/dpkg/status.d/libc6").read_text().startswith("Package: libc6\n")
    assert not (dest / "var/lib/dpkg/status.d/dash").exists()
    assert (tmp_path / "m").read_text().splitlines()[0] == "ca-certificates 1.0-ca-certificates"


def test_runtime_root_refuses_a_shell_that_a_shipped_package_brings(tmp_path: Path) -> None:
    files = {**ROOT_FILES, "netbase": ["/etc/services", "/usr/bin/sh"]}
    _package_root(tmp_path / "source", files, ROOT_DEPENDS)
    with pytest.raises(SystemExit, match="would ship a shell, package manager or pip: usr/bin/sh"):
        rootfs.main(["--source", str(tmp_path / "source"), "--dest", str(tmp_path / "dest")])


def test_check_mode_fails_on_an_image_with_a_shell(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3").write_text("")
    assert rootfs.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "usr/bin/bash").write_text("")
    with pytest.raises(SystemExit, match="usr/bin/bash"):
        rootfs.main(["--check", str(tmp_path)])


def test_copy_never_follows_a_symlinked_directory_out_of_the_root(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "dest"
    (source / "usr/lib").mkdir(parents=True)
    (source / "usr/lib/ssl").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/cert.pem").write_text("host file")
    dest.mkdir()
    with pytest.raises(ValueError, match="usr/lib/ssl is a symlink"):
        rootfs._copy_entry(source, dest, "usr/lib/ssl/cert.pem")
