"""cosmonb/gallery.py and its place in the runner: ``python -m cosmonb run`` writes build/index.html.

One test executes a tiny two-cell notebook (a matplotlib figure, a recorded number) through the
real runner (papermill, a kernel); the others build galleries from notebooks made in memory.
"""
import argparse
import base64
import io
import json

import nbformat
import pytest

from cosmonb import gallery, notebooks_runner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(color: str, size=(3, 2)) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    ax.fill([0, 1, 1, 0], [0, 0, 1, 1], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _cell(png=None, tags=()):
    outputs = [nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": "<Figure>"})] if png else []
    return nbformat.v4.new_code_cell("plot()", metadata={"tags": list(tags)} if tags else {}, outputs=outputs)


def _pixel(png_bytes):
    from PIL import Image

    with Image.open(io.BytesIO(png_bytes)) as im:
        return im.convert("RGB").getpixel((im.width // 2, im.height // 2)), im.size


def test_runner_executes_a_notebook_and_writes_its_gallery_entry(tmp_path):
    """The runner (papermill, a real kernel) on a tiny notebook: executed copy, run.json, HTML page,
    thumbnail of the tagged figure, and a card with its time and recorded numbers."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 98 · A tiny notebook\n\nOne figure, one number."),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\n"
            "ax.plot([0, 1, 2], [2, 0, 1], color='tab:red', lw=8)\nplt.show()", metadata={"tags": ["key-figure"]}),
        nbformat.v4.new_code_cell(
            "import json, os\nwith open(os.environ['COSMONB_RECORDS'], 'w') as f:\n"
            "    json.dump({'peak_height': 0.123456, 'coverage': {'p68': 0.68}}, f)\n"
            "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([0, 1], [0, 1])\nplt.show()"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "src" / "98_tiny.ipynb"
    src.parent.mkdir()
    nbformat.write(nb, src)
    out = tmp_path / "build"
    parser = notebooks_runner.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(src), "--quick", "--no-record", "--out", str(out), "-p", "EXTRA", "3"])
    assert notebooks_runner.run(args) == 0

    run = json.loads((out / "98_tiny.run.json").read_text())
    assert run["status"] == "ok" and run["mode"] == "quick EXTRA=3" and run["parameters"] == {"EXTRA": 3}
    assert 0 < run["seconds"] < 300
    page = (out / "index.html").read_text()
    assert 'id="98_tiny"' in page and "98 · A tiny notebook" in page
    assert 'href="98_tiny.html"' in page and 'src="98_tiny.thumb.png"' in page
    assert f"run time: {run['seconds']:.1f} s (quick EXTRA=3 mode)" in page
    assert "peak_height" in page and "0.1235" in page and "p68 0.68" in page
    # the thumbnail is the tagged figure (red line, 4 x 3 in), not the last one (2 x 2 in, blue)
    thumb = (out / "98_tiny.thumb.png").read_bytes()
    assert thumb.startswith(PNG_MAGIC)
    executed = nbformat.read(out / "98_tiny.ipynb", as_version=4)
    assert gallery.key_figure(executed) == base64.b64decode(executed.cells[-2].outputs[-1]["data"]["image/png"])
    (w, h) = _pixel(thumb)[1]
    assert w > h  # 4:3, the tagged figure's aspect
    html = (out / "98_tiny.html").read_text()
    assert "<html" in html and "A tiny notebook" in html and "data:image/png;base64" in html


def test_key_figure_prefers_the_tagged_cell_then_the_last_image():
    red, blue = _png("red"), _png("blue")
    tagged = nbformat.v4.new_notebook(cells=[_cell(red, ["key-figure"]), _cell(blue)])
    assert _pixel(gallery.key_figure(tagged))[0] == (255, 0, 0)
    untagged = nbformat.v4.new_notebook(cells=[_cell(red), _cell(blue), _cell()])
    assert _pixel(gallery.key_figure(untagged))[0] == (0, 0, 255)
    # a tagged cell that shows no figure (e.g. it failed) falls back to the last image
    failed = nbformat.v4.new_notebook(cells=[_cell(red), _cell(None, ["key-figure"])])
    assert _pixel(gallery.key_figure(failed))[0] == (255, 0, 0)
    assert gallery.key_figure(nbformat.v4.new_notebook(cells=[_cell()])) is None
    with pytest.raises(ValueError, match="at most one cell tagged 'key-figure'"):
        gallery.key_figure(nbformat.v4.new_notebook(cells=[_cell(red, ["key-figure"]), _cell(blue, ["key-figure"])]))


def test_gallery_lists_every_executed_notebook_with_time_from_papermill_metadata(tmp_path):
    """Notebooks executed by an earlier run keep their card; without run.json the time is papermill's."""
    for name, color, seconds in (("00_first", "green", 12.5), ("01_second", "red", None)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name} title"), _cell(_png(color))])
        if seconds is not None:
            nb.metadata["papermill"] = {"duration": seconds, "parameters": {"QUICK": False}, "exception": None}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    (tmp_path / "notes.ipynb").write_text("not a numbered notebook: ignored")
    entries = gallery.collect(tmp_path)
    assert [e.name for e in entries] == ["00_first", "01_second"]
    assert entries[0].seconds == 12.5 and entries[0].mode == "full" and entries[1].seconds is None
    assert (tmp_path / "01_second.thumb.png").read_bytes().startswith(PNG_MAGIC)
    page = gallery.build_gallery(tmp_path).read_text()
    assert page.index('id="00_first"') < page.index('id="01_second"')
    assert "run time: 12.5 s (full mode)" in page and "run time: not recorded" in page
    assert (tmp_path / "00_first.html").is_file()


def test_gallery_reports_a_failed_run_and_escapes_html(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 03 · <b>Bold</b> & co"), _cell()])
    nbformat.write(nb, tmp_path / "03_x.ipynb")
    (tmp_path / "03_x.run.json").write_text(json.dumps(
        {"seconds": 4.0, "status": "FAILED: ValueError: bad <input>", "mode": "quick"}))
    page = gallery.build_gallery(tmp_path, html=False).read_text()
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in page and "<b>Bold</b>" not in page
    assert "FAILED: ValueError: bad &lt;input&gt;" in page and "(no figure)" in page and "(no recorded numbers)" in page
    assert 'href="03_x.html"' not in page  # html=False and no page on disk: no dead link


def test_gallery_rejects_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        gallery.build_gallery(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no executed notebooks"):
        gallery.build_gallery(tmp_path)


def test_runner_parameters_are_parsed_and_name_their_mode():
    assert notebooks_runner.parse_parameters([("TRAIN", "True"), ("DATA_ROOT", "/d"), ("N", "5")]) == \
        {"TRAIN": True, "DATA_ROOT": "/d", "N": 5}
    assert notebooks_runner.mode_name(True) == "quick"
    assert notebooks_runner.mode_name(False, {"TRAIN": True, "EPOCHS": 2}) == "full EPOCHS=2 TRAIN=True"
    with pytest.raises(ValueError, match="--quick"):
        notebooks_runner.parse_parameters([("QUICK", "True")])
    with pytest.raises(ValueError, match="Python name"):
        notebooks_runner.parse_parameters([("not-a-name", "1")])
