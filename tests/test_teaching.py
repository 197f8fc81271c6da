"""Every notebook carries the teaching scaffolding of docs/TEACHING.md.

Read from the notebooks themselves (no execution): a learning-objectives cell right after the
title, with the ``python -m cosmonb info`` check, a time plan whose minutes add up to 90 (or to
90 per session, for a two-session plan with a ``## Session break`` cell, as notebook 01 has) and
**skip** marks, the papers with arXiv links; at least one "Check your understanding" cell with
collapsible answers; and exactly one code cell tagged ``key-figure`` for the gallery.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from conftest import NOTEBOOKS

NAMES = sorted(p.name for p in NOTEBOOKS.glob("0*.ipynb"))
OBJECTIVES = re.compile(r"^## Learning objectives\s*$", re.M)
ARXIV_LINK = re.compile(r"\[[^\]]*\]\(https://arxiv\.org/abs/[^)\s]+\)")


def _markdown(nb):
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def time_plan(source: str) -> list[tuple[str, int]]:
    """The plan's minutes columns: ``(header, sum)`` for each column whose header says "minutes".

    The table is the first after a ``### Time plan`` heading; a cell counts its leading number
    ("5: show the figure only" counts 5); empty cells (a row marking the break between sessions)
    count nothing.
    """
    _, heading, rest = source.partition("### Time plan")
    assert heading, "no '### Time plan' heading"
    rows = []
    for line in rest.splitlines():
        if line.lstrip().startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break  # the table has ended
    assert len(rows) > 2, "the time plan has no table"
    header, body = rows[0], [r for r in rows[2:] if not set("".join(r)) <= set("-: ")]
    columns = []
    for j, name in enumerate(header):
        if "minutes" in name.lower():
            total = 0
            for row in body:
                found = re.match(r"\*{0,2}(\d+)", row[j]) if j < len(row) else None
                total += int(found[1]) if found else 0
            columns.append((name, total))
    return columns


@pytest.mark.parametrize("name", NAMES)
def test_learning_objectives_right_after_the_title(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{name}: no title cell"
    cell = nb.cells[1]
    assert cell.cell_type == "markdown" and OBJECTIVES.search(cell.source), \
        f"{name}: the cell after the title should be the '## Learning objectives' markdown cell"
    text = cell.source
    assert re.search(r"^1\. ", text, re.M) and re.search(r"^2\. ", text, re.M), f"{name}: objectives as a numbered list"
    assert "**Prerequisites.**" in text, f"{name}: no prerequisites"
    assert "**Before you start.**" in text and "python -m cosmonb info" in text, \
        f"{name}: 'Before you start' should point to `python -m cosmonb info`"
    assert "**skip**" in text, f"{name}: the time plan marks nothing **skip** for a short slot"
    assert "### The papers and their code" in text and ARXIV_LINK.search(text), \
        f"{name}: the papers should carry arXiv links"


@pytest.mark.parametrize("name", NAMES)
def test_time_plan_adds_up_to_90_minutes_per_session(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    text = next(s for s in _markdown(nb) if OBJECTIVES.search(s))
    columns = time_plan(text)
    assert columns, f"{name}: the time plan has no 'minutes' column"
    sessions = 1 + sum(s.startswith("## Session break") for s in _markdown(nb))
    for header, total in columns:
        if "session" in header.lower() and "90-minute" not in header:  # a plan over all the sessions
            assert sessions > 1, f"{name}: a plan in sessions needs a '## Session break' cell"
            assert total == 90 * sessions, f"{name}: column {header!r} adds up to {total}, not {90 * sessions}"
        else:
            assert total == 90, f"{name}: column {header!r} adds up to {total} minutes, not 90"


@pytest.mark.parametrize("name", NAMES)
def test_check_your_understanding_with_collapsible_answers(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    checks = [s for s in _markdown(nb) if s.startswith("### Check your understanding")]
    assert checks, f"{name}: no '### Check your understanding' cell"
    for s in checks:
        questions = re.findall(r"^\d+\. ", s, re.M)
        answers = re.findall(r"<details>\s*<summary>\s*Answer\s*</summary>.*?</details>", s, re.S)
        assert answers and len(answers) == len(questions), \
            f"{name}: every question of {s.splitlines()[0]!r} needs a collapsible answer"


@pytest.mark.parametrize("name", NAMES)
def test_one_key_figure(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in nb.cells if "key-figure" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", \
        f"{name}: tag exactly one code cell 'key-figure' (found {len(tagged)})"


def test_time_plan_parser():
    plan = ("### Time plan\n\n| section | minutes | when short |\n|---|---|---|\n| a | 10 | |\n"
            "| b | 5: the figure only | **skip** |\n| *break* | | |\n\nFor a 60-minute slot ...\n| x | 99 |\n")
    assert time_plan(plan) == [("minutes", 15)]
