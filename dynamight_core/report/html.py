"""The self-contained HTML report page.

Every figure is embedded (base64 PNG): the page needs no network access and no other
file. Its only script records in the page how many of its images the browser decoded.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1360px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.verdict { padding: 0.8em 1em; border-radius: 6px; font-weight: 600; }
.good { background: #e3f4e1; border: 1px solid #7bbf73; }
.bad { background: #fbeede; border: 1px solid #e0a25a; }
.warning { background: #fff6d6; border-left: 4px solid #e0b100; padding: 0.4em 0.8em;
           margin: 0.4em 0; }
figure { margin: 1.2em 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.4em 0; }
/* the movies are at the map's own pixel size: scaled up to be seen */
img[src^="data:image/gif"] { width: min(100%, 720px); }
nav.toc { background: #f6f8fa; border: 1px solid #ddd; padding: 0.4em 1.2em; margin: 1em 0; }
nav.toc ul { margin: 0.2em 0; padding-left: 1.2em; } nav.toc li.sub { margin-left: 1.4em; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
figcaption { font-size: 0.88em; color: #555; }
"""

IMAGE_CHECK = (
    "<script>window.addEventListener('load',function(){var i=Array.from(document.images);"
    "document.body.setAttribute('data-images-loaded',i.filter(function(m){return m.complete"
    "&&m.naturalWidth>0}).length+'/'+i.length)});</script>"
)


@dataclass
class Page:
    """An HTML page built section by section."""

    title: str
    parts: list[str] = field(default_factory=list)

    headings: list[tuple[int, str, str]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading with an anchor; level 2 and 3 headings go in the contents."""
        anchor = _anchor(text, {a for _, a, _ in self.headings})
        self.headings.append((level, anchor, text))
        self.parts.append(f'<h{level} id="{anchor}">{html.escape(text)}</h{level}>')

    def paragraph(self, text: str, css: str | None = None) -> None:
        """A paragraph of escaped text."""
        attribute = f' class="{css}"' if css else ""
        self.parts.append(f"<p{attribute}>{html.escape(text)}</p>")

    def figure(self, png: str | Path, caption: str) -> None:
        """A PNG (or an animated GIF) embedded as base64, with its caption."""
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        mime = "image/gif" if Path(png).suffix.lower() == ".gif" else "image/png"
        alt = html.escape(caption, quote=True)
        self.parts.append(
            f'<figure><img src="data:{mime};base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table of escaped cells (floats with 4 significant digits)."""

        def cell(value: Any) -> str:
            if value is None:
                return "none"
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            return html.escape(text)

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows
        )
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def preformatted(self, text: str) -> None:
        """Monospaced text."""
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def collapsed(self, title: str, text: str) -> None:
        """Monospaced text, folded away under ``title`` until the reader opens it."""
        self.parts.append(
            f"<details><summary>{html.escape(title)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )

    def contents(self) -> str:
        """The table of contents: a link to every level 2 and 3 heading."""
        items = "".join(
            f'<li{" class=sub" if level == 3 else ""}><a href="#{anchor}">'
            f"{html.escape(text)}</a></li>"
            for level, anchor, text in self.headings
            if level in (2, 3)
        )
        return f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>'

    def render(self) -> str:
        """The whole document."""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>"
            + self.contents()
            + "\n".join(self.parts)
            + IMAGE_CHECK
            + "</body></html>\n"
        )


def _anchor(text: str, taken: set[str]) -> str:
    """An id for a heading: its words in lower case joined by '-', unique on the page."""
    base = "-".join(re.findall(r"[a-z0-9]+", text.lower())) or "section"
    anchor, number = base, 2
    while anchor in taken:
        anchor, number = f"{base}-{number}", number + 1
    return anchor


def maps_table(page: Page, maps: Mapping[str, Mapping[str, float]]) -> None:
    """Resolution, FSC areas and B-factors of each post-processed map."""
    rows = [
        [
            label,
            values["resolution_0143_a"],
            values["unmasked_resolution_0143_a"],
            f"{values['masked_fsc_area']:.4f} ± {values['masked_fsc_area_se']:.4f}",
            values["unmasked_fsc_area"],
            values["bfactor_a2"],
            values.get("local_resolution_median_a", "-"),
        ]
        for label, values in maps.items()
    ]
    page.table(
        [
            "half maps",
            "resolution, masked (Å, FSC 0.143)",
            "unmasked (Å)",
            "masked FSC area ± SE",
            "unmasked FSC area",
            "B-factor (Å²)",
            "median local resolution (Å)",
        ],
        rows,
    )


def gain_table(page: Page, gain: Mapping[str, Any]) -> None:
    """Gain of the deformed maps (and of the null control) in masked FSC area.

    Where it moves (the moving region, when the run has one) and over the whole mask.
    """
    scopes = [("whole mask", gain)]
    if gain.get("moving_region"):
        scopes.insert(0, ("where it moves", gain["moving_region"]))
    rows = []
    for where, scope in scopes:
        for key, label in (
            ("over_consensus", "deformed over consensus"),
            ("over_null", "deformed over null control"),
            ("null_over_consensus", "null control over consensus"),
        ):
            if key in scope:
                entry = scope[key]
                rows.append([where, label, f"{entry['fsc_area']:+.4f}", entry["se"], entry["z"]])
    page.table(["where", "comparison", "masked FSC area gain", "standard error", "z"], rows)


def regions_table(page: Page, regions: Sequence[Mapping[str, Any]]) -> None:
    """Motion, its error and the local resolution per spatial region of the model."""
    header = ["region", "pseudo-atoms", "centre (x, y, z) Å", "RMS motion (Å)"]
    header += ["RMS error (Å)", "error / motion"]
    header += ["local res. consensus (Å)", "deformed (Å)", "gain (Å)"]
    page.table(
        header,
        [
            [
                row["region"],
                row["gaussians"],
                f"{row['centre_x_a']:.1f}, {row['centre_y_a']:.1f}, {row['centre_z_a']:.1f}",
                row["motion_rms_a"],
                row["error_rms_a"],
                row["error_over_motion"],
                row.get("local_resolution_consensus_a", "-"),
                row.get("local_resolution_deformed_a", "-"),
                row.get("local_resolution_gain_a", "-"),
            ]
            for row in regions
        ],
    )


def json_text(value: Any) -> str:
    """Indented JSON for the provenance section."""
    return json.dumps(value, indent=1, sort_keys=True, default=str)
