"""The build: fetch every pinned archive, read, clean, screen, deduplicate, split by document, and
write the splits (plus per-register valid/test files) into a temporary folder that replaces the
output folder only when every part has been read: a failed build leaves no partial corpus."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from model_export.corpus.archives import SOURCES_FILE, fetch_archive, iter_archive_members, \
    load_source_specs
from model_export.corpus.cleaning import clean_paragraph
from model_export.corpus.docs_table import update_docs_table
from model_export.corpus.readers import reader_for
from model_export.corpus.screening import check_members_allowed, check_reserved_paragraph_count
from runtime.tokenizer import WORD

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT_DIR = REPO_ROOT / "models" / "corpus"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "edgetype" / "corpus"
DOCS_FILE = REPO_ROOT / "docs" / "corpus.md"
SPLITS = ("train", "valid", "test")
REGISTER_SPLITS = ("valid", "test")  # written again per register, under registers/
REGISTER_DIR = "registers"
FORMAT_VERSION = 2
MIN_DEDUP_WORDS = 6  # shorter paragraphs ("Yes, sir.") repeat naturally and are kept
DROP_REASONS = ("foreign", "not_prose", "duplicate", "moby_dick", "mail_header")


def split_of(doc_id: str, seed: str, percent: dict[str, int]) -> str:
    """Deterministic split of a document: sha256(seed/doc_id) mod 100 against the percentages."""
    bucket = int.from_bytes(hashlib.sha256(f"{seed}/{doc_id}".encode()).digest()[:8], "big") % 100
    edge = 0
    for name in SPLITS:
        edge += percent[name]
        if bucket < edge:
            return name
    return SPLITS[-1]


def register_split_name(split: str, register: str) -> str:
    """File name of a per-register split: 'valid.technical.txt.gz' (eval ksr reads the register)."""
    return f"{split}.{register}.txt.gz"


@dataclass
class PartStats:
    documents: int = 0
    paragraphs: int = 0
    bytes: int = 0
    words: int = 0

    def add(self, paragraphs: list[str]) -> None:
        self.documents += 1
        self.paragraphs += len(paragraphs)
        self.bytes += sum(len(p) + 2 for p in paragraphs)
        self.words += sum(len(WORD.findall(p)) for p in paragraphs)

    def merge(self, other: "PartStats") -> None:
        for key in ("documents", "paragraphs", "bytes", "words"):
            setattr(self, key, getattr(self, key) + getattr(other, key))


class _GzipWriter:
    """Reproducible .gz output (mtime 0, no file name in the header)."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0,
                                 compresslevel=9)

    def write_document(self, paragraphs: list[str]) -> None:
        self._gz.write("".join(p + "\n\n" for p in paragraphs).encode("ascii"))

    def close(self) -> None:
        self._gz.close()
        self._raw.close()


class _Writers:
    """The three splits plus, lazily, one valid and one test file per register."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / REGISTER_DIR).mkdir(parents=True)
        self.splits = {name: _GzipWriter(folder / f"{name}.txt.gz") for name in SPLITS}
        self.registers: dict[tuple[str, str], _GzipWriter] = {}

    def write(self, split: str, register: str, paragraphs: list[str]) -> None:
        self.splits[split].write_document(paragraphs)
        if split in REGISTER_SPLITS:
            key = (split, register)
            if key not in self.registers:
                self.registers[key] = _GzipWriter(
                    self.folder / REGISTER_DIR / register_split_name(split, register))
            self.registers[key].write_document(paragraphs)

    def close(self) -> None:
        for writer in [*self.splits.values(), *self.registers.values()]:
            writer.close()


def clean_part(spec, archive: Path) -> tuple[list[tuple[str, list[str]]], dict, str]:
    """Read and clean one part (no dedup yet): ([(doc_id, clean paragraphs)] in id order,
    dropped counts, an example Moby-Dick paragraph). Independent of the other parts, so parts may
    be cleaned in parallel processes; dedup and splitting stay sequential (build order)."""
    members = list(iter_archive_members(archive))
    check_members_allowed(spec.package, [name for name, _ in members])
    dropped = dict.fromkeys(DROP_REASONS, 0)
    reserved_example = ""
    documents = sorted(reader_for(spec)(members), key=lambda d: d.doc_id)
    del members
    cleaned = []
    for document in documents:
        kept = []
        for raw in document.paragraphs:
            text, reason = clean_paragraph(raw)
            if text is None:
                dropped[reason] += 1
                if reason == "moby_dick":
                    reserved_example = reserved_example or raw
                continue
            kept.append(text)
        cleaned.append((document.doc_id, kept))
    check_reserved_paragraph_count(spec.package, dropped["moby_dick"], reserved_example)
    return cleaned, dropped, reserved_example


def _clean_part_job(job):
    spec, archive = job
    return clean_part(spec, archive)


def _dedup_and_write(spec, archive: Path, cleaned, dropped: dict, seed: str, percent: dict,
                     seen: set[bytes], writers: _Writers) -> dict:
    split_stats = {name: PartStats() for name in SPLITS}
    for doc_id, paragraphs in cleaned:
        kept = []
        for text in paragraphs:
            if len(WORD.findall(text)) >= MIN_DEDUP_WORDS:
                key = hashlib.sha1(" ".join(text.lower().split()).encode()).digest()
                if key in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(key)
            kept.append(text)
        if not kept:
            continue
        split = split_of(doc_id, seed, percent)
        writers.write(split, spec.register, kept)
        split_stats[split].add(kept)
    total = PartStats()
    for stats in split_stats.values():
        total.merge(stats)
    return {
        "id": spec.id, "registry": spec.registry, "package": spec.package,
        "version": spec.version, "sha256": spec.sha256, "archive_bytes": archive.stat().st_size,
        "files": spec.files, "genre": spec.genre, "register": spec.register,
        "licence": spec.licence, "documents": total.documents, "paragraphs": total.paragraphs,
        "bytes": total.bytes, "words": total.words,
        "splits": {name: vars(stats) for name, stats in split_stats.items()},
        "dropped_paragraphs": dropped,
    }


def _cleaned_parts(jobs: list, processes: int):
    """clean_part of each (spec, archive), in order; forked worker processes when processes > 1."""
    if processes <= 1:
        for job in jobs:
            print(f"corpus: reading {job[0].id} ({job[0].package} {job[0].version})", file=sys.stderr)
            yield _clean_part_job(job)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        yield from pool.imap(_clean_part_job, jobs)


def build_corpus(output_dir: Path, cache_dir: Path, sources_file: Path = SOURCES_FILE,
                 docs_file: Path | None = DOCS_FILE, only: list[str] | None = None,
                 processes: int = 1) -> dict:
    """Fetch, clean, deduplicate and split every pinned source; returns the sources.json dict."""
    config, specs = load_source_specs(sources_file)
    if only:
        specs = [s for s in specs if s.id in only]
    seed, percent = config["split_seed"], config["split_percent"]
    output_dir = Path(output_dir)
    partial = output_dir.parent / f".{output_dir.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    seen_paragraphs: set[bytes] = set()
    parts = []
    try:
        writers = _Writers(partial)
        try:
            jobs = [(spec, fetch_archive(spec, cache_dir)) for spec in specs]  # all fetched first
            for (spec, archive), (cleaned, dropped, _) in zip(jobs, _cleaned_parts(jobs, processes)):
                part = _dedup_and_write(spec, archive, cleaned, dropped, seed, percent,
                                        seen_paragraphs, writers)
                parts.append(part)
                print(f"corpus:   {part['documents']} documents, {part['paragraphs']} paragraphs, "
                      f"{part['bytes'] / 1e6:.2f} MB, {part['words']} words; dropped "
                      f"{part['dropped_paragraphs']}", file=sys.stderr)
        finally:
            writers.close()
        summary = _summary(config, parts, partial, seed, percent)
        (partial / "sources.json").write_text(json.dumps(summary, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _replace_folder(partial, output_dir)
    if docs_file is not None and docs_file.exists():
        update_docs_table(docs_file, summary)
    return summary


def _replace_folder(new: Path, target: Path) -> None:
    """Put the complete new corpus in place of the old one (two renames)."""
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.replace(old)
    new.replace(target)
    if old.exists():
        shutil.rmtree(old)


def _summary(config: dict, parts: list[dict], folder: Path, seed: str, percent: dict) -> dict:
    dropped_total = dict.fromkeys(DROP_REASONS, 0)
    for part in parts:
        for reason, count in part["dropped_paragraphs"].items():
            dropped_total[reason] += count
    registers = {}
    for register in sorted({p["register"] for p in parts}):
        of_register = [p for p in parts if p["register"] == register]
        registers[register] = {
            "parts": [p["id"] for p in of_register],
            **{split: {"words": sum(p["splits"][split]["words"] for p in of_register),
                       **({"file": f"{REGISTER_DIR}/{register_split_name(split, register)}"}
                          if split in REGISTER_SPLITS and (folder / REGISTER_DIR /
                          register_split_name(split, register)).exists() else {})}
               for split in SPLITS}}
    return {
        "format_version": FORMAT_VERSION,
        "built_by": "edgetype corpus build (model_export/corpus/)",
        "sources_file": "model_export/corpus_sources.json",
        "split_seed": seed, "split_percent": percent,
        "min_dedup_words": MIN_DEDUP_WORDS,
        "reserved_for_evaluation": ["SpamAssassin public mail corpus", "Moby-Dick (any Melville)"],
        "parts": parts,
        "dropped_paragraphs": dropped_total,
        "splits": {name: {
            "file": f"{name}.txt.gz",
            "gz_bytes": (folder / f"{name}.txt.gz").stat().st_size,
            **{key: sum(p["splits"][name][key] for p in parts)
               for key in ("documents", "paragraphs", "bytes", "words")},
        } for name in SPLITS},
        "registers": registers,
        "considered_and_rejected": config.get("considered_and_rejected", []),
    }
