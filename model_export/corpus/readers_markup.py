"""Readers of documentation markup: HTML pages (Sphinx, DocBook, Publican, ...) and Perl POD.
Only running text is kept: code blocks, tables, navigation and headings are dropped."""
from __future__ import annotations

import gzip
import html.parser
import re
from typing import Callable, Iterator

from model_export.corpus.cleaning import collapse_spaces
from model_export.corpus.documents import Document, Members, member_selected
from model_export.corpus.screening import member_never_read

class _ParagraphHTMLParser(html.parser.HTMLParser):
    """Collects the text of <p> / <div class="para"> elements outside <pre>/<script>/<style>/navigation."""

    _SKIP = {"pre", "script", "style", "head", "nav", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._skip_depth = 0
        self._div_stack: list[bool] = []  # per open <div>: is it a paragraph?
        self._parts: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "div":  # DocBook/Publican pages (debian-handbook) use <div class="para">
            is_para = ("class", "para") in attrs
            self._div_stack.append(is_para)
            if is_para and not self._skip_depth:
                self._flush()
                self._parts = []
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "p" and not self._skip_depth:
            self._flush()
            self._parts = []
        elif tag == "br" and self._parts is not None:
            self._parts.append(" ")

    def handle_endtag(self, tag):
        if tag == "div":
            if self._div_stack and self._div_stack.pop():
                self._flush()
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "p":
            self._flush()

    def handle_data(self, data):
        if self._parts is not None and not self._skip_depth:
            self._parts.append(data)

    def _flush(self):
        if self._parts:
            text = collapse_spaces("".join(self._parts))
            if text:
                self.paragraphs.append(text)
        self._parts = None

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(markup: str) -> list[str]:
    parser = _ParagraphHTMLParser()
    parser.feed(markup)
    parser.close()
    return parser.paragraphs



def make_html_reader(source_id: str, rules: list[str]) -> Callable[[Members], Iterator[Document]]:
    """HTML members matched by `rules` (corpus_sources.json "members") -> one document per page."""
    def read_html(members: Members) -> Iterator[Document]:
        for name, content in members:
            if member_never_read(name) or not member_selected(rules, name):
                continue
            if name.endswith(".gz"):  # Debian compresses large pages (changelog.html.gz)
                content = gzip.decompress(content)
            page = name.rsplit("/", 1)[-1].removesuffix(".gz").removesuffix(".html")
            relative = name.split("/html/", 1)[-1] if "/html/" in name else page
            yield Document(f"{source_id}/{relative.removesuffix('.gz')}", html_paragraphs(
                content.decode("utf-8", "replace")), [name])
    return read_html


# Perl POD (perlpod): blank-line separated paragraphs; '=' command paragraphs, verbatim (indented)
# paragraphs and =begin/=end, =for blocks are not text; formatting codes keep their text.
_POD_CODE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_CODE_MULTI = re.compile(r"([A-Z])<<+\s+(.*?)\s+>>+", re.S)
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(match: re.Match) -> str:
    code, body = match.group(1), match.group(2)
    if code in ("X", "Z"):
        return ""
    if code == "E":
        return _POD_ESCAPES.get(body, "")
    if code == "L":
        text = body.split("|", 1)[0] if "|" in body else body
        return text.replace('"', "").split("/")[-1] if "/" in text and "|" not in body else text
    return body


def pod_paragraphs(text: str) -> list[str]:
    paragraphs, skipping = [], False
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not block.strip():
            continue
        if block.startswith("="):
            command = block.split(None, 1)[0]
            if command == "=begin":
                skipping = True
            elif command == "=end":
                skipping = False
            continue
        if skipping or block[0] in " \t":
            continue
        body = _POD_CODE_MULTI.sub(_pod_code, block)
        for _ in range(4):  # nested codes, innermost first
            body, count = _POD_CODE.subn(_pod_code, body)
            if not count:
                break
        paragraphs.append(collapse_spaces(body))
    return paragraphs


def make_pod_reader(source_id: str, rules: list[str]) -> Callable[[Members], Iterator[Document]]:
    def read_pod(members: Members) -> Iterator[Document]:
        for name, content in members:
            if member_never_read(name) or not member_selected(rules, name):
                continue
            page = name.rsplit("/", 1)[-1].removesuffix(".pod")
            yield Document(f"{source_id}/{page}", pod_paragraphs(content.decode(
                "utf-8", "replace")), [name])
    return read_pod
