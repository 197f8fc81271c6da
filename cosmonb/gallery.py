"""The gallery of executed notebooks: ``build/index.html``, one card per notebook.

``python -m cosmonb run`` (and ``make run``) calls :func:`build_gallery` on its output
folder after the notebooks ran. Each executed notebook ``<out>/NN_name.ipynb`` gets

- ``<out>/NN_name.html``: the executed notebook rendered by nbconvert's ``HTMLExporter``;
- ``<out>/NN_name.thumb.png``: a thumbnail of its key figure: the last PNG output of the
  code cell tagged ``key-figure`` (cell metadata ``tags``), else the notebook's last PNG;
- a card in ``<out>/index.html`` with that thumbnail, linking to the HTML, its run time
  (``<out>/NN_name.run.json``, written by the runner; else papermill's recorded duration)
  and its headline numbers (``<out>/NN_name.records.json``, what ``cosmonb.record`` collected).

Every notebook in the folder gets its card, also those executed by an earlier run.

Example:
    >>> import base64, io, json, tempfile, pathlib
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import nbformat
    >>> fig, ax = plt.subplots(figsize=(2, 2)); _ = ax.plot([0, 1], [1, 0])
    >>> buf = io.BytesIO(); fig.savefig(buf, format="png"); plt.close(fig)
    >>> cell = nbformat.v4.new_code_cell("plot()", metadata={"tags": ["key-figure"]}, outputs=[
    ...     nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(buf.getvalue()).decode()})])
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · Demo"), cell]),
    ...                out / "99_demo.ipynb")
    >>> _ = (out / "99_demo.records.json").write_text(json.dumps({"answer": 42.0}))
    >>> page = build_gallery(out, html=False)
    >>> text = page.read_text()
    >>> "99 · Demo" in text and "99_demo.thumb.png" in text and "answer" in text
    True
"""
from __future__ import annotations

import base64
import html as htmllib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KEY_FIGURE_TAG", "GalleryEntry", "key_figure", "notebook_title", "collect", "export_html",
           "build_gallery", "format_value"]

#: The cell tag that marks a notebook's key figure.
KEY_FIGURE_TAG = "key-figure"
#: Thumbnails are scaled down to this width in pixels (never up).
THUMB_WIDTH = 480
#: Executed notebooks the gallery lists: ``NN_name.ipynb``.
PATTERN = "[0-9][0-9]_*.ipynb"


@dataclass
class GalleryEntry:
    """One card of the gallery: what one executed notebook produced."""

    name: str                      #: the notebook's file stem, e.g. ``00_fields_and_power_spectra``
    title: str                     #: the first heading of its first markdown cell
    seconds: float | None          #: wall time of its run (None: unknown)
    status: str                    #: ``ok`` or the runner's failure line
    mode: str                      #: ``full``, ``quick``, or with parameters, e.g. ``full TRAIN=True``
    records: dict = field(default_factory=dict)  #: its headline numbers (``cosmonb.record``)
    thumbnail: str | None = None   #: file name of the thumbnail PNG beside index.html
    html: str | None = None        #: file name of the rendered notebook beside index.html


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _pngs(cell) -> list[str]:
    return [o["data"]["image/png"] for o in cell.get("outputs", [])
            if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})]


def key_figure(nb) -> bytes | None:
    """PNG bytes of ``nb``'s key figure: the last PNG output of the cell tagged ``key-figure``,
    else the last PNG output of the notebook; None when the notebook shows no PNG.

    A tagged cell without a PNG output (it failed, or was never executed) falls back to the last
    PNG of the notebook. More than one tagged cell is an error: the tag names one figure.
    """
    code = [c for c in nb.cells if c.get("cell_type") == "code"]
    tagged = [c for c in code if KEY_FIGURE_TAG in _tags(c)]
    if len(tagged) > 1:
        raise ValueError(f"notebook: expected at most one cell tagged {KEY_FIGURE_TAG!r}, found {len(tagged)}")
    for cells in (tagged, code):
        pngs = [p for c in cells for p in _pngs(c)]
        if pngs:
            data = pngs[-1]
            return base64.b64decode("".join(data) if isinstance(data, list) else data)
    return None


def notebook_title(nb, default: str = "") -> str:
    """The first ``#`` heading of the notebook's first markdown cell (``default`` when it has none)."""
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            break
    return default


def _thumbnail(png: bytes, width: int = THUMB_WIDTH) -> bytes:
    """``png`` scaled down to ``width`` pixels wide (aspect kept), as PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        if image.width > width:
            image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _run_info(out: Path, stem: str, nb) -> tuple[float | None, str, str]:
    """(seconds, status, mode) of one notebook: its ``.run.json``, else papermill's metadata."""
    run_file = out / f"{stem}.run.json"
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        return run.get("seconds"), run.get("status", "ok"), run.get("mode", "")
    pm = nb.metadata.get("papermill", {})
    status = "ok" if not pm.get("exception") else "FAILED (see the notebook)"
    quick = pm.get("parameters", {}).get("QUICK")
    return pm.get("duration"), status, "" if quick is None else ("quick" if quick else "full")


def collect(out, *, write_thumbnails: bool = True) -> list[GalleryEntry]:
    """The gallery's entries for the executed notebooks ``out/NN_*.ipynb``, in teaching order.

    With ``write_thumbnails`` each key figure is written to ``out/<name>.thumb.png`` (atomically).
    """
    import nbformat

    from .runtime import atomic_write, read_records

    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"out: no folder {out} (run the notebooks first: python -m cosmonb run)")
    entries = []
    for path in sorted(out.glob(PATTERN)):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as err:  # a corrupt or half-written notebook gets a card that says so
            entries.append(GalleryEntry(path.stem, path.stem, None, f"unreadable: {type(err).__name__}: {err}", ""))
            continue
        seconds, status, mode = _run_info(out, path.stem, nb)
        records_file = out / f"{path.stem}.records.json"
        records = read_records(records_file) if records_file.is_file() else {}
        thumb = None
        png = key_figure(nb)
        if png is not None and write_thumbnails:
            thumb = f"{path.stem}.thumb.png"
            with atomic_write(out / thumb) as f:
                f.write(_thumbnail(png))
        entries.append(GalleryEntry(path.stem, notebook_title(nb, path.stem), seconds, status, mode, records,
                                    thumb, f"{path.stem}.html"))
    return entries


def export_html(notebook, target) -> Path:
    """Render an executed notebook to a standalone HTML page with nbconvert (written atomically)."""
    import nbformat
    from nbconvert import HTMLExporter

    from .runtime import atomic_write

    notebook, target = Path(notebook), Path(target)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    with atomic_write(target, "w") as f:
        f.write(body)
    return target


def format_value(value) -> str:
    """A recorded number for the gallery: floats to 4 significant digits, containers item by item.

    Example:
        >>> format_value({"area_ratio": 1.023456, "n": 3})
        'area_ratio 1.023, n 3'
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.cards { display: flex; flex-wrap: wrap; gap: 1.5em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 1em; width: 500px; }
.card img { width: 100%; border: 1px solid #eee; }
.card h2 { font-size: 1.05em; margin: 0 0 .5em 0; }
.failed { color: #b00; font-weight: bold; }
table { border-collapse: collapse; font-size: .85em; width: 100%; }
td { border-top: 1px solid #eee; padding: 2px 4px; vertical-align: top; }
td.value { font-family: monospace; }
"""


def _card(entry: GalleryEntry) -> str:
    e = htmllib.escape
    link = e(entry.html) if entry.html else None
    title = f'<a href="{link}">{e(entry.title)}</a>' if link else e(entry.title)
    image = (f'<a href="{link or e(entry.thumbnail)}"><img class="thumbnail" src="{e(entry.thumbnail)}" '
             f'alt="key figure of {e(entry.name)}"></a>' if entry.thumbnail else "<p>(no figure)</p>")
    seconds = "not recorded" if entry.seconds is None else f"{entry.seconds:.1f} s"
    mode = f" ({e(entry.mode)} mode)" if entry.mode else ""
    status = "" if entry.status == "ok" else f'<p class="failed">{e(entry.status)}</p>'
    rows = "".join(f'<tr><td>{e(str(k))}</td><td class="value">{e(format_value(v))}</td></tr>'
                   for k, v in entry.records.items())
    numbers = f"<table>{rows}</table>" if rows else "<p>(no recorded numbers)</p>"
    return (f'<div class="card" id="{e(entry.name)}"><h2>{title}</h2>{image}'
            f'<p class="time">run time: {seconds}{mode}</p>{status}{numbers}</div>')


def build_gallery(out, *, html: bool = True, title: str = "cosmonb notebooks") -> Path:
    """Write ``out/index.html`` (and, with ``html``, each notebook as ``out/<name>.html``); returns its path.

    Raises FileNotFoundError when ``out`` holds no executed notebook.
    """
    from .runtime import atomic_write

    out = Path(out)
    entries = collect(out)
    if not entries:
        raise FileNotFoundError(f"out: no executed notebooks ({PATTERN}) in {out}")
    for entry in entries:
        if html and entry.html and not entry.status.startswith("unreadable"):
            export_html(out / f"{entry.name}.ipynb", out / entry.html)
        elif not (out / str(entry.html)).is_file():
            entry.html = None  # no page to link to
    esc = htmllib.escape
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{esc(title)}</h1>\n"
            f"<p>Executed by <code>python -m cosmonb run</code>; built {time.strftime('%Y-%m-%d %H:%M')}. "
            f"Each card links to the executed notebook.</p>\n<div class=\"cards\">\n"
            + "\n".join(_card(entry) for entry in entries) + "\n</div>\n</body></html>\n")
    index = out / "index.html"
    with atomic_write(index, "w") as f:
        f.write(page)
    return index
