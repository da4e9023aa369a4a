"""The report's sections as Markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from aclecg_core.report.blocks import Image, Link, Section, Table, Tiles


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], base: Path) -> str:
    """Markdown with images linked relative to ``base`` (the run folder)."""
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                out += [block, ""]
            elif isinstance(block, Tiles):
                out += [f"- **{k}**: {v} ({d})" for k, v, d in block.items]
                out.append("")
            elif isinstance(block, Link):
                out += [f"[{block.label}]({block.href}) {block.text}", ""]
            elif isinstance(block, Image):
                out += [f"![{block.caption}]({block.path.relative_to(base).as_posix()})", ""]
            elif not any(block.headers):
                out += [f"- **{row[0]}**: {_md_cell(row[1])}" for row in block.rows]
                out.append("")
            else:
                def line(cells: list[str]) -> str:
                    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"

                rule = ["---:" if i in block.right else "---" for i in range(len(block.headers))]
                out += [line(block.headers), "|" + "|".join(rule) + "|"]
                out += [line(row) for row in block.rows]
                if block.footer:
                    out.append(line([f"**{c}**" if c else "" for c in block.footer]))
                out.append("")
    return "\n".join(out)


CSS = """
body{margin:0;background:#f3f4f6;color:#1d2329;
 font:15px/1.55 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:32px 40px 64px;background:#fff}
h1{font-size:1.75rem;margin:0 0 .2em}
h2{font-size:1.25rem;margin:2.2em 0 .6em;padding-bottom:.25em;border-bottom:1px solid #e3e5e8}
p{margin:.6em 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px;margin:1em 0}
.tile{border:1px solid #e3e5e8;border-radius:8px;padding:12px 14px;background:#fafbfc}
.tile .label{font-size:.78rem;color:#5b6470;text-transform:uppercase;letter-spacing:.04em}
.tile .value{font-size:1.65rem;font-weight:600;font-variant-numeric:tabular-nums}
.tile .detail{font-size:.83rem;color:#5b6470}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;min-width:60%;max-width:100%;font-size:.88rem;margin:.8em 0}
th,td{padding:6px 10px;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}
thead th{background:#f1f3f5;font-weight:600}
tfoot td{font-weight:600;border-top:2px solid #d5d9de}
tbody tr:nth-child(even){background:#fafbfc}
tbody th{font-weight:600;width:13em;background:none}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1.4em 0}
img{max-width:100%;height:auto;display:block}
figcaption{color:#5b6470;font-size:.85rem;margin-top:.3em}
"""


def _html_table(table: Table) -> str:
    esc = html.escape
    if not any(table.headers):
        rows = "".join(f"<tr><th scope=row>{esc(r[0])}</th><td>{esc(r[1])}</td></tr>"
                       for r in table.rows)
        return f"<div class=table-wrap><table><tbody>{rows}</tbody></table></div>"

    def cls(i: int) -> str:
        return " class=num" if i in table.right else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(table.headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in table.rows)
    foot = "" if not table.footer else "<tfoot><tr>" + "".join(
        f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(table.footer)) + "</tr></tfoot>"
    return (f"<div class=table-wrap><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody>{foot}</table></div>")


def render_html(title: str, sections: Sequence[Section]) -> str:
    """Self-contained HTML: inline CSS, figures as base64 PNG data URIs, no external assets."""
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang=en><head><meta charset=utf-8>",
           "<meta name=viewport content='width=device-width,initial-scale=1'>",
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
           f"<h1>{esc(title)}</h1>"]
    for section in sections:
        out.append(f"<section><h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                out.append(f"<p>{esc(block)}</p>")
            elif isinstance(block, Tiles):
                out.append("<div class=tiles>" + "".join(
                    f"<div class=tile><div class=label>{esc(label)}</div>"
                    f"<div class=value>{esc(value)}</div>"
                    f"<div class=detail>{esc(detail)}</div></div>"
                    for label, value, detail in block.items) + "</div>")
            elif isinstance(block, Link):
                out.append(f"<p><a href='{esc(block.href)}'>{esc(block.label)}</a> "
                           f"{esc(block.text)}</p>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                out.append(f"<figure><img alt='{esc(block.caption)}' "
                           f"src='data:image/png;base64,{data}'>"
                           f"<figcaption>{esc(block.caption)}</figcaption></figure>")
            else:
                out.append(_html_table(block))
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out)
