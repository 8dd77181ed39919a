"""The report document (sections of paragraphs, lists, tables, figures) and its two renderings:
Markdown (figures linked as PNG files beside it) and one self-contained HTML file (figures
embedded as base64 data: URIs, inline CSS, no scripts, no external assets)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from encoderlab.reporting.tables import Table


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Figure:
    path: Path  # a PNG under the report folder
    caption: str


Block = Paragraph | Bullets | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Document:
    title: str
    intro: list[Block]
    sections: list[Section]


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    """Text as a Markdown viewer shows it: `&` and `<` as entities (a label, a run name or a
    tweet holding `<script>` or `&amp;` was raw HTML to the viewer; both still show as
    written). The report's own Markdown (**, `, [..](..)) needs neither character."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def _md_cell(text: str) -> str:
    """One table cell: on one line, its `|` escaped, `&` and `<` as entities (_md_text)."""
    return _md_text(" ".join(str(text).split()).replace("|", "\\|"))


def _md_table(t: Table) -> str:
    lines = []
    if t.title:
        lines += [f"**{_md_cell(t.title)}**", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if not t.rows:
        lines.append("| " + " | ".join(["(none)"] + [""] * (len(t.headers) - 1)) + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines)


def _md_block(block: Block, root: Path) -> str:
    if isinstance(block, Paragraph):
        return _md_text(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_text(item)}" for item in block.items)
    if isinstance(block, Table):
        return _md_table(block)
    rel = block.path.relative_to(root).as_posix()
    return f"![{_md_cell(block.caption)}]({rel})\n\n*{_md_text(block.caption)}*"


def to_markdown(doc: Document, root: Path) -> str:
    parts = [f"# {_md_text(doc.title)}"] + [_md_block(b, root) for b in doc.intro]
    parts.append(
        "## Contents\n\n"
        + "\n".join(f"- [{_md_text(s.title)}](#{s.anchor})" for s in doc.sections if s.level == 2)
    )
    for s in doc.sections:
        parts.append(f'<a id="{s.anchor}"></a>\n\n{"#" * s.level} {_md_text(s.title)}')
        parts += [_md_block(b, root) for b in s.blocks]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; text-align: left; }
thead th { background: #f0f2f5; }
tbody th { background: #fafafa; font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfbfd; }
.wide { overflow-x: auto; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
.note { font-size: 13px; color: #555; font-style: italic; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(t: Table) -> str:
    out = ['<div class="wide"><table>']
    if t.title:
        out.append(f"<caption>{_e(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in t.headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            tag = "th" if i == 0 and t.row_headers else "td"
            cells.append(f"<{tag}>{_e(c)}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    if not t.rows:
        out.append(f'<tr><td colspan="{len(t.headers)}">(none)</td></tr>')
    out.append("</tbody></table></div>")
    if t.note:
        out.append(f'<p class="note">{_e(t.note)}</p>')
    return "\n".join(out)


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_e(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(block.caption)}">'
        f"<figcaption>{_e(block.caption)}</figcaption></figure>"
    )


def to_html(doc: Document) -> str:
    body = [f"<h1>{_e(doc.title)}</h1>"] + [_html_block(b) for b in doc.intro]
    toc = "".join(
        f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a></li>'
        for s in doc.sections
        if s.level == 2
    )
    body.append(f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>")
    for s in doc.sections:
        body.append(f'<h{s.level} id="{_e(s.anchor)}">{_e(s.title)}</h{s.level}>')
        body += [_html_block(b) for b in s.blocks]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
