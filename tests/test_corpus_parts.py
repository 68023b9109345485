"""The corpus parts added for issue 16: POD and OSIS readers, gzip'd HTML, member rules, registers,
and the build's bad-input rules (a reserved text inside a package stops it; no partial corpus)."""
import gzip
import hashlib
import io
import json
import tarfile

import pytest

from model_export import corpus
from model_export.corpus.documents import member_selected
from model_export.corpus.readers_markup import make_html_reader
from runtime.errors import UserError


def test_pod_paragraphs_keep_text_drop_commands_and_verbatim():
    pod = ("=head1 NAME\n\nperlfaq - questions\n\n=head2 How do I B<open> a file?\n\n"
           "Use C<open()> with L<perlfunc/open> or L<the guide|perlopentut>, E<lt>hereE<gt>.\n\n"
           "    my $x = 1;   # verbatim code\n\n=begin html\n\n<p>raw</p>\n\n=end html\n\n"
           "Say C<< $a <=> $b >> to compare.X<compare>\n\n=cut\n")
    assert corpus.pod_paragraphs(pod) == [
        "perlfaq - questions", "Use open() with open or the guide, <here>.", "Say $a <=> $b to compare."]


def test_osis_chapters_drop_notes_and_titles():
    block = ('<title type="main">Matthew</title><div sID="g1" type="x-p"/>'
             '<chapter n="1" osisID="Matt.1" sID="Matt.1"/><w lemma="x">The</w> book,'
             '<note placement="foot">a note</note> of <w>Jesus</w>. <div eID="g1" type="x-p"/>'
             '<div sID="g2" type="x-p"/>Abraham became the father.<chapter eID="Matt.1"/>'
             '<chapter n="2" osisID="Matt.2" sID="Matt.2"/>Now when Jesus was born.')
    assert list(corpus.osis_chapters(block)) == [
        ("Matt.1", ["The book, of Jesus.", "Abraham became the father."]),
        ("Matt.2", ["Now when Jesus was born."])]


def test_member_rules_and_gzip_html():
    rules = ["!*/translations/*", "!*/genindex*", "usr/share/doc/x/html/*.html"]
    assert member_selected(rules, "usr/share/doc/x/html/a/b.html")
    assert not member_selected(rules, "usr/share/doc/x/html/translations/it/b.html")
    assert not member_selected(rules, "usr/share/doc/x/html/genindex.html")
    assert not member_selected(rules, "usr/share/doc/x/other.html")
    page = gzip.compress(b"<html><body><p>First entry of the changelog.</p></body></html>")
    docs = list(make_html_reader("cl", ["*.html.gz"])([("u/html/whatsnew/changelog.html.gz", page)]))
    assert [(d.doc_id, d.paragraphs) for d in docs] == [("cl/whatsnew/changelog.html", ["First entry of the changelog."])]


def test_every_pinned_part_has_a_known_register_and_reader():
    _, specs = corpus.load_source_specs()
    assert {s.register for s in specs} >= {"technical", "fiction"}
    for spec in specs:
        if spec.reader in ("html", "pod", "text", "sword"):
            assert spec.members, spec.id  # generic readers need member rules


def _tgz(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _sources(tmp_path, files, package="fake-sotu"):
    archive = tmp_path / "cache" / f"{package}-1.0.0.tgz"
    archive.parent.mkdir(exist_ok=True)
    archive.write_bytes(_tgz(files))
    sources = {"split_seed": "t", "split_percent": {"train": 60, "valid": 20, "test": 20},
               "archives": [{"id": "sotu", "registry": "npm", "package": package, "version": "1.0.0",
                             "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "reader": "sotu",
                             "register": "speech", "files": "x", "genre": "g", "licence": "pd"}]}
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(sources))
    return path


SPEECH = b"Fellow citizens, this address is plain prose and long enough to keep here today."


def test_build_writes_register_splits_and_replaces_the_folder(tmp_path):
    files = {f"package/data/{1900 + i}_p_x.txt": SPEECH + f" Number {i}.".encode() for i in range(40)}
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an older build")
    summary = corpus.build_corpus(out, tmp_path / "cache", sources_file=_sources(tmp_path, files),
                                  docs_file=None)
    assert not (out / "stale.txt").exists()  # the whole folder is the new build
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left behind
    for split in ("valid", "test"):
        info = summary["registers"]["speech"][split]
        regional = list(corpus.iter_split_paragraphs(out / info["file"]))
        assert regional == list(corpus.iter_split_paragraphs(out / f"{split}.txt.gz"))  # one register here
    assert summary["parts"][0]["register"] == "speech"


@pytest.mark.parametrize("member", ["package/data/melville_moby_dick.txt", "package/easy_ham/0001.abc"])
def test_a_package_holding_a_reserved_text_stops_the_build(tmp_path, member):
    files = {"package/data/1900_p_x.txt": SPEECH, member: b"Call me Ishmael."}
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.txt.gz").write_bytes(b"old")
    with pytest.raises(UserError, match=r"fake-sotu.*contains.*reserved"):
        corpus.build_corpus(out, tmp_path / "cache", sources_file=_sources(tmp_path, files), docs_file=None)
    assert (out / "train.txt.gz").read_bytes() == b"old"  # the previous corpus is untouched
    assert not list(tmp_path.glob(".out.*"))  # and no partial one is left


def test_many_moby_dick_paragraphs_stop_the_build(tmp_path):
    moby = b"Call me Ishmael. Some years ago--never mind how long precisely--having little or no money."
    files = {f"package/data/{1900 + i}_p_x.txt": moby + f" Part {i}.".encode() for i in range(3)}
    with pytest.raises(UserError, match="fake-sotu.*Moby-Dick"):
        corpus.build_corpus(tmp_path / "out", tmp_path / "cache", sources_file=_sources(tmp_path, files),
                            docs_file=None)
    assert not (tmp_path / "out").exists()


def test_changed_package_is_named(tmp_path):
    path = _sources(tmp_path, {"package/data/1900_p_x.txt": SPEECH})
    data = json.loads(path.read_text())
    data["archives"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="fake-sotu 1.0.0.*sha256.*changed"):
        corpus.build_corpus(tmp_path / "out", tmp_path / "cache", sources_file=path, docs_file=None)


def test_parallel_build_writes_the_same_bytes(tmp_path):
    files = {f"package/data/{1900 + i}_p_x.txt": SPEECH + f" Number {i % 25}.".encode() for i in range(40)}
    sources = _sources(tmp_path, files)
    config = json.loads(sources.read_text())
    second = dict(config["archives"][0], id="sotu2")  # the same archive twice: the second is all duplicates
    config["archives"].append(second)
    sources.write_text(json.dumps(config))
    one = corpus.build_corpus(tmp_path / "a", tmp_path / "cache", sources_file=sources, docs_file=None)
    two = corpus.build_corpus(tmp_path / "b", tmp_path / "cache", sources_file=sources, docs_file=None,
                              processes=2)
    assert one == two and two["parts"][1]["dropped_paragraphs"]["duplicate"] > 0
    for name in ("train.txt.gz", "valid.txt.gz", "test.txt.gz", "sources.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
