"""The report as a document of sections, rendered to a self-contained report.html (figures
inline as base64) and to report.md (figures linked beside it)."""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass
class Plot:
    file: str          # PNG name inside the report's folder
    title: str
    caption: str


@dataclass
class Skipped:
    what: str
    why: str

    @property
    def line(self) -> str:
        return f"Skipped: {self.what}: {self.why}."


@dataclass
class Text:
    markdown: str      # paragraphs, headings and pipe tables


Item = Union[Plot, Skipped, Text]


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]


def shift_headings(markdown: str, by: int) -> str:
    """Demote headings so that an included Markdown file nests under a section."""
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + by, 6) + " ", markdown, flags=re.M)


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for item in section.items:
            if isinstance(item, Plot):
                out += [f"![{item.title}]({item.file})", "", f"*{item.title}.* {item.caption}", ""]
            elif isinstance(item, Skipped):
                out += [f"> {item.line}", ""]
            else:
                out += [item.markdown.rstrip(), ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", text)


def table_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(markdown: str) -> str:
    """The Markdown the report includes (suite tables): headings, pipe tables, paragraphs."""
    out, lines, k = [], markdown.splitlines(), 0
    while k < len(lines):
        line = lines[k]
        heading = re.match(r"^(#{1,6}) (.*)", line)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            k += 1
        elif line.lstrip().startswith("|"):
            block = []
            while k < len(lines) and lines[k].lstrip().startswith("|"):
                block.append(lines[k])
                k += 1
            rows = [c for c in map(table_cells, block) if not all(re.fullmatch(r":?-+:?", x) for x in c)]
            if not rows:
                continue
            head, body = rows[0], rows[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
        elif line.strip():
            para = []
            while k < len(lines) and lines[k].strip() and not re.match(r"^(#{1,6} |\s*\|)", lines[k]):
                para.append(lines[k].strip())
                k += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        else:
            k += 1
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
.skipped { color: #8a5a00; background: #fff8e6; border-left: 3px solid #e0a800; padding: 0.4em 0.8em; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def to_html(doc: Document, folder: Path) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{_inline(doc.title)}</h1>"]
    for section in doc.sections:
        out.append(f"<h2>{_inline(section.title)}</h2>")
        for item in section.items:
            if isinstance(item, Plot):
                data = base64.b64encode((folder / item.file).read_bytes()).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(item.title)}">'
                           f"<figcaption><b>{_inline(item.title)}.</b> {_inline(item.caption)}"
                           "</figcaption></figure>")
            elif isinstance(item, Skipped):
                out.append(f'<p class="skipped">{_inline(item.line)}</p>')
            else:
                out.append(markdown_to_html(item.markdown))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
