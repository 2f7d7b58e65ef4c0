"""Names from files reach terminals and spreadsheets unable to act."""

from __future__ import annotations

import csv
import io

import pytest

from napari_kernelspec.base.text import csv_cell, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("conv1", "conv1"),
        ("a\nkernelspec: error: fake", "a\\nkernelspec: error: fake"),
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        ("tab\there\r", "tab\\there\\r"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("Ünïcödé filter", "Ünïcödé filter"),
    ],
)
def test_printable_escapes_control_characters(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert "\n" not in printable(raw) and "\x1b" not in printable(raw)


def test_printable_limit_cuts_with_ellipsis() -> None:
    assert printable("x" * 300, limit=20) == "x" * 19 + "…"


@pytest.mark.parametrize(
    "formula", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_csv_cell_neutralises_formulas(formula: str) -> None:
    buf = io.StringIO()
    csv.writer(buf).writerow([csv_cell(formula), csv_cell(-0.5), csv_cell("conv1")])
    row = next(csv.reader(io.StringIO(buf.getvalue())))
    assert row[0] == "'" + formula
    assert row[1:] == ["-0.5", "conv1"]


def test_numbers_read_n_a_when_undefined() -> None:
    from napari_kernelspec.base.text import number, percent

    assert number(0.9777777777777777) == "0.978" and number(-0.5, 1) == "-0.5"
    assert [number(v) for v in (float("nan"), None, float("inf"), "x")] == ["n/a"] * 4
    assert percent(0.4) == "40%" and percent(0.9777, 1) == "97.8%"
    assert percent(float("nan")) == "n/a"
