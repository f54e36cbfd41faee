"""Building blocks of the self-contained HTML reports: the page, sections, tables, figures.

A page is one file that opens from disk on any machine: PNGs are embedded as base64 data URIs
and the styles are inline in the template, with no scripts, fonts or stylesheets to fetch. Each
number carries its exact value in ``data-value`` (and its name in ``data-metric``), so that a
program can read a page back without parsing the rounded text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from utils.run_log import write_text_atomic

TEMPLATE = Path(__file__).parent / "templates" / "report.html"


def write_page(path: Path, title: str, parts: Iterable[str]) -> Path:
    """Fill the page template with ``parts`` (HTML; empty ones dropped), written atomically."""
    body = "\n".join(part for part in parts if part)
    page = Template(TEMPLATE.read_text()).substitute(title=escape(title), body=body)
    write_text_atomic(path, page)
    return path


def figure(path: Path | None, caption: str) -> str:
    """The PNG at ``path`` embedded in the page; nothing when it was not drawn."""
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def section(title: str, *parts: str) -> str:
    """A titled block of ``parts``; nothing when they are all empty."""
    if not any(parts):
        return ""
    body = "\n".join(part for part in parts if part)
    return f"<section>\n<h2>{escape(title)}</h2>\n{body}\n</section>"


def table(header: Iterable[str], rows: Iterable[str]) -> str:
    """A table of rendered ``<tr>`` rows that scrolls sideways when wider than the page."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "\n".join(rows)
    return f'<div class="scroll"><table>\n<tr>{head}</tr>\n{body}\n</table></div>'


def key_value_table(
    items: Iterable[tuple[str, Any]], header: tuple[str, str] = ("key", "value")
) -> str:
    """Values wrap (a hardware string can be long); the table scrolls only for long keys."""
    rows = [
        f'<tr>{text_cell(key)}<td class="wrap">{escape(plain(value))}</td></tr>'
        for key, value in items
    ]
    return table(header, rows)


def text_cell(text: object) -> str:
    return f"<td>{escape(str(text))}</td>"


def number_cell(value: float, fmt: str, metric: str) -> str:
    """``value`` rounded by ``fmt`` on screen, exact in the markup (``repr`` round-trips)."""
    return (
        f'<td class="num" data-metric="{escape(metric)}" data-value="{value!r}">'
        f"{fmt.format(value)}</td>"
    )


def plain(value: Any) -> str:
    """A value as YAML shows it: strings bare, the rest as JSON (null, true, [1, 2])."""
    return value if isinstance(value, str) else json.dumps(value)
