"""Assemble a shell-less Python runtime root filesystem from installed Debian packages.

This is how ``gcr.io/distroless/python3-debian13`` is made, without Bazel: the runtime is the files of
a closed set of Debian packages (the interpreter, its standard library and the shared libraries they
link), with none of the packages that make a system administrable: no shell (``bash``, ``dash``), no
package manager (``dpkg``, ``apt``), no ``pip``, no coreutils. The packages are taken from a root
filesystem that ``debootstrap`` installed and configured (``hack/image/build.sh``), so maintainer
scripts have already run; their few generated files the runtime needs (the CA bundle) are copied as
well.

The package set is the dependency closure of :data:`ROOTS`, walked through ``Depends`` and
``Pre-Depends`` (the relations dpkg itself enforces; ``Recommends`` is not followed, as
``--no-install-recommends`` would not), choosing for each alternative group the first installed
alternative, and never entering :data:`DENY`: those packages only configure a system (``debconf``) or
are tools (``openssl``'s CLI, ``perl-base``) that the runtime never executes. :func:`forbidden_paths`
is the hard guarantee behind the set: the build fails if any shell, package manager or ``pip`` made it
in anyway.

Like distroless, each shipped package's ``dpkg`` status paragraph is kept in
``/var/lib/dpkg/status.d/<package>`` so vulnerability scanners still see what is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# What the runtime runs: the interpreter (python3-minimal owns the `python3` name), the standard
# library, and the data Python reads at run time (CA bundle, /etc/services and protocols, zoneinfo).
ROOTS = (
    "python3-minimal",
    "python3.13-minimal",
    "libpython3.13-stdlib",
    "ca-certificates",
    "netbase",
    "tzdata",
)

# Reached through Depends but never used at run time. debconf and dpkg only configure packages,
# openssl is the command line tool (libssl3 is the library), perl-base runs maintainer scripts, and the
# rest are the essential userland a shell-less image does without.
DENY = frozenset(
    {
        "apt",
        "base-files",
        "base-passwd",
        "bash",
        "coreutils",
        "dash",
        "debconf",
        "debianutils",
        "diffutils",
        "dpkg",
        "findutils",
        "grep",
        "gzip",
        "hostname",
        "init-system-helpers",
        "libc-bin",
        "login",
        "mawk",
        "ncurses-base",
        "ncurses-bin",
        "openssl",
        "perl-base",
        "python3-pip",
        "python3.13-venv",
        "sed",
        "sensible-utils",
        "tar",
        "util-linux",
    }
)

# Directories never shipped: documentation and message catalogues (python:*-slim drops them too).
SKIP_PREFIXES = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/locale/",
    "/usr/share/lintian/",
    "/usr/share/bug/",
)

# Executables whose presence would make the image a shell-able, installable system.
FORBIDDEN_NAMES = frozenset(
    {"sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "pip", "pip3", "pip3.13", "su", "sudo"}
)
# ensurepip's bundled wheel would install pip; Debian ships ensurepip without it (python3.13-venv).
FORBIDDEN_DIRS = ("usr/lib/python3.13/ensurepip/_bundled",)
PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})

NONROOT_UID = 65532
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT_UID}:\n"
# glibc's default without this file consults /etc/hosts only when DNS is unavailable.
NSSWITCH = "".join(
    f"{db}: files{' dns' if db == 'hosts' else ''}\n"
    for db in ("passwd", "group", "shadow", "hosts", "networks", "protocols", "services")
)
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"

_RELATION = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(.*\))?\s*(?:\[.*\])?\s*$")


@dataclass(frozen=True)
class Package:
    """One installed package of a dpkg status file."""

    name: str
    version: str
    architecture: str
    depends: tuple[tuple[str, ...], ...]
    provides: tuple[str, ...]
    paragraph: str = field(repr=False, compare=False)


def _fields(paragraph: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") and key:
            out[key] += "\n" + line
            continue
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def parse_relations(value: str) -> tuple[tuple[str, ...], ...]:
    """``a (>= 1) | b:any, c`` -> ``(("a", "b"), ("c",))``: names only, as dpkg resolves them."""
    groups = []
    for group in value.split(","):
        if not group.strip():
            continue
        names = []
        for alternative in group.split("|"):
            match = _RELATION.match(alternative)
            if match is None:
                raise ValueError(f"unparsable relation {alternative!r} in {value!r}")
            names.append(match.group(1))
        groups.append(tuple(names))
    return tuple(groups)


def parse_status(text: str) -> dict[str, Package]:
    """Installed packages of ``/var/lib/dpkg/status`` by name (one architecture per root)."""
    packages: dict[str, Package] = {}
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        f = _fields(paragraph)
        if not f.get("Status", "").endswith(" installed"):
            continue
        relations = ", ".join(v for v in (f.get("Pre-Depends", ""), f.get("Depends", "")) if v)
        packages[f["Package"]] = Package(
            name=f["Package"],
            version=f.get("Version", ""),
            architecture=f.get("Architecture", ""),
            depends=parse_relations(relations),
            provides=tuple(group[0] for group in parse_relations(f.get("Provides", ""))),
            paragraph=paragraph.strip() + "\n",
        )
    return packages


def closure(packages: Mapping[str, Package], roots: Iterable[str], deny: frozenset[str]) -> list[str]:
    """The packages to ship, sorted: ``roots`` and everything they need that ``deny`` does not stop.

    An alternative group is satisfied by its first installed alternative (a real package, or one that
    ``Provides`` the name), as on the system it came from. A group whose chosen package is denied is
    left out on purpose; a group nothing installed satisfies is an error: the source root is broken.
    """
    providers: dict[str, str] = {}
    for package in packages.values():
        for virtual in package.provides:
            providers.setdefault(virtual, package.name)
    chosen: set[str] = set()
    todo = list(roots)
    for root in todo:
        if root not in packages:
            raise ValueError(f"root package {root!r} is not installed")
    while todo:
        name = todo.pop()
        if name in chosen or name in deny:
            continue
        chosen.add(name)
        for group in packages[name].depends:
            resolved = next(
                (
                    alt if alt in packages else providers[alt]
                    for alt in group
                    if alt in packages or alt in providers
                ),
                None,
            )
            if resolved is None:
                raise ValueError(f"{name}: no installed package satisfies {' | '.join(group)}")
            todo.append(resolved)
    return sorted(chosen)


def canonical(path: str, aliases: Mapping[str, str]) -> str:
    """``/lib64/x`` -> ``/usr/lib64/x`` where the root merges ``/lib64`` into ``/usr`` (usrmerge)."""
    head, sep, rest = path[1:].partition("/")
    if head in aliases:
        return "/" + aliases[head] + (sep + rest if rest else "")
    return path


def forbidden_paths(paths: Iterable[str]) -> list[str]:
    """Paths (relative to the root) that would give the image a shell, package manager or pip."""
    bad = []
    for path in paths:
        rel = path.lstrip("/")
        pure = PurePosixPath(rel)
        executable = pure.name in FORBIDDEN_NAMES and pure.parent.name in ("bin", "sbin")
        bundled = any(rel == d or rel.startswith(d + "/") for d in FORBIDDEN_DIRS)
        pip = any(a in PACKAGE_DIRS and b == "pip" for a, b in zip(pure.parts, pure.parts[1:], strict=False))
        if executable or bundled or pip:
            bad.append(rel)
    return sorted(bad)


def _list_file(source: Path, package: Package) -> Path:
    info = source / "var/lib/dpkg/info"
    qualified = info / f"{package.name}:{package.architecture}.list"
    return qualified if qualified.exists() else info / f"{package.name}.list"


def _no_symlink_parents(root: Path, rel: str) -> None:
    """Refuse a path whose parent directories cross a symlink: an absolute one would leave the root."""
    current = root
    for part in PurePosixPath(rel).parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise ValueError(f"{rel}: {current.relative_to(root)} is a symlink")


def _copy_entry(source: Path, dest: Path, rel: str) -> None:
    _no_symlink_parents(source, rel)
    _no_symlink_parents(dest, rel)
    src = source / rel
    dst = dest / rel
    st = src.lstat()
    if stat.S_ISDIR(st.st_mode):
        dst.mkdir(parents=True, exist_ok=True)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(st.st_mode):
        if dst.is_symlink():
            dst.unlink()
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)


def assemble(source: Path, dest: Path, names: Iterable[str], packages: Mapping[str, Package]) -> int:
    """Copy the named packages' files from ``source`` into ``dest``; returns the newest file's mtime.

    That time is the root's ``SOURCE_DATE_EPOCH``: it depends only on the package versions, so the
    same package set always gives the same base image digest.
    """
    aliases = {
        entry.name: os.readlink(entry).lstrip("/")
        for entry in source.iterdir()
        if entry.is_symlink() and not os.readlink(entry).startswith("..")
    }
    for alias, target in sorted(aliases.items()):
        (dest / alias).symlink_to(target)
    newest = 0
    for name in names:
        for line in _list_file(source, packages[name]).read_text().splitlines():
            path = canonical(line.strip(), aliases)
            if path in ("/.", "/", "") or path.startswith(SKIP_PREFIXES):
                continue
            rel = path.lstrip("/")
            if not (source / rel).is_symlink() and not (source / rel).exists():
                continue  # trimmed from the source root (docs, locales)
            _copy_entry(source, dest, rel)
            if (source / rel).is_file() and not (source / rel).is_symlink():
                newest = max(newest, int((source / rel).lstat().st_mtime))
    return newest


def finish(source: Path, dest: Path, names: Iterable[str], packages: Mapping[str, Package]) -> None:
    """The files no package owns: accounts, resolver order, the CA bundle, os-release, dpkg status."""
    etc = dest / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "nsswitch.conf").write_text(NSSWITCH)
    for rel in ("usr/lib/os-release", "etc/debian_version"):
        if (source / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
    if not (etc / "os-release").exists():
        (etc / "os-release").symlink_to("../usr/lib/os-release")
    # update-ca-certificates (ca-certificates' postinst) generated the bundle; OpenSSL's default
    # locations (/usr/lib/ssl, shipped as symlinks by the openssl CLI package) point at it.
    (dest / CA_BUNDLE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / CA_BUNDLE, dest / CA_BUNDLE)
    ssl = dest / "usr/lib/ssl"
    ssl.mkdir(parents=True, exist_ok=True)
    for name, target in (("certs", "../../../etc/ssl/certs"), ("cert.pem", "../../../" + CA_BUNDLE)):
        if not (ssl / name).is_symlink():
            (ssl / name).symlink_to(target)
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    home = dest / "home/nonroot"
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the image build runs as root; tests of the layout need not
        os.chown(home, NONROOT_UID, NONROOT_UID)
    os.chmod(home, 0o700)
    status = dest / "var/lib/dpkg/status.d"
    status.mkdir(parents=True, exist_ok=True)
    for name in names:
        (status / name).write_text(packages[name].paragraph)


def all_paths(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--source", type=Path, help="a debootstrapped, configured root")
    parser.add_argument("--dest", type=Path, help="an empty directory to fill")
    parser.add_argument("--manifest", type=Path, help="write `package version` lines here")
    parser.add_argument("--epoch", type=Path, help="write the root's SOURCE_DATE_EPOCH here")
    parser.add_argument("--check", type=Path, help="only check a root (a mounted image) for forbidden paths")
    args = parser.parse_args(argv)
    if args.check is not None:
        bad = forbidden_paths(all_paths(args.check))
        if bad:
            raise SystemExit(f"{args.check} ships a shell, package manager or pip: " + ", ".join(bad))
        print(f"{args.check}: no shell, package manager or pip", file=sys.stderr)
        return 0
    if args.source is None or args.dest is None:
        parser.error("--source and --dest are required (or --check)")
    packages = parse_status((args.source / "var/lib/dpkg/status").read_text())
    names = closure(packages, ROOTS, DENY)
    args.dest.mkdir(parents=True, exist_ok=True)
    if any(args.dest.iterdir()):
        raise SystemExit(f"{args.dest} is not empty")
    newest = assemble(args.source, args.dest, names, packages)
    finish(args.source, args.dest, names, packages)
    bad = forbidden_paths(all_paths(args.dest))
    if bad:
        raise SystemExit("the runtime root would ship a shell, package manager or pip: " + ", ".join(bad))
    if args.manifest is not None:
        args.manifest.write_text("".join(f"{n} {packages[n].version}\n" for n in names))
    if args.epoch is not None:
        args.epoch.write_text(f"{newest}\n")
    print(f"{len(names)} packages: {' '.join(names)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
