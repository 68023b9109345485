"""The generated sources table of docs/corpus.md (between its markers), from sources.json."""
from __future__ import annotations

from pathlib import Path

TABLE_START, TABLE_END = "<!-- sources-table:start -->", "<!-- sources-table:end -->"


def sources_table_markdown(summary: dict) -> str:
    splits = list(summary["splits"])
    lines = ["| part | registry: package version | register | genre | licence | documents "
             "| paragraphs | MB | words | train / valid / test words |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for part in summary["parts"]:
        split_words = " / ".join(str(part["splits"][s]["words"]) for s in splits)
        lines.append(f"| {part['id']} | {part['registry']}: `{part['package']}` {part['version']} "
                     f"| {part.get('register', '')} | {part['genre']} | {part['licence']} | "
                     f"{part['documents']} | {part['paragraphs']} | {part['bytes'] / 1e6:.2f} | "
                     f"{part['words']} | {split_words} |")
    lines += ["", "| split | documents | paragraphs | MB (text) | MB (gz) | words |",
              "|---|---|---|---|---|---|"]
    for name in splits:
        split = summary["splits"][name]
        lines.append(f"| {name} | {split['documents']} | {split['paragraphs']} | "
                     f"{split['bytes'] / 1e6:.2f} | {split['gz_bytes'] / 1e6:.2f} | "
                     f"{split['words']} |")
    if summary.get("registers"):
        lines += ["", "| register | parts | " + " | ".join(f"{s} words" for s in splits)
                  + " | per-register files |", "|---|---|" + "---|" * len(splits) + "---|"]
        for register, info in summary["registers"].items():
            files = ", ".join(f"`{info[s]['file']}`" for s in splits if "file" in info[s])
            lines.append(f"| {register} | {', '.join(info['parts'])} | "
                         + " | ".join(str(info[s]["words"]) for s in splits) + f" | {files} |")
    lines.append("")
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped_paragraphs"].items())
    lines.append(f"Paragraphs dropped: {dropped}.")
    return "\n".join(lines)


def update_docs_table(docs_file: Path, summary: dict) -> None:
    text = docs_file.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        return
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    docs_file.write_text(f"{head}{TABLE_START}\n{sources_table_markdown(summary)}\n{TABLE_END}{tail}")
