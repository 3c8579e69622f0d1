"""How options are declared and checked before a job exists: types, bounds, limits, lengths, syntax."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest

from exporters.base import (
    MAX_OPTION_CHARS,
    SYNTAXES,
    InvalidOptions,
    Limits,
    describe_options,
    option,
    parse_options,
)
from exporters.contact import ContactSheetOptions
from exporters.images import ImageOptions
from exporters.pdf import ImagePdfOptions
from exporters.pdfdocs import PdfEditOptions, PdfRenderOptions, PdfSplitOptions
from exporters.registry import CONVERSIONS
from exporters.tables import TableXlsxOptions


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_nan_infinity_and_overflowing_numbers_are_refused(value: float) -> None:
    # NaN passes every comparison with a bound, so a bound alone let it through.
    with pytest.raises(InvalidOptions, match="margin_mm must be a finite number"):
        parse_options(ImagePdfOptions, {"margin_mm": value})


def test_a_float_option_takes_an_integer_as_a_float() -> None:
    options = parse_options(ImagePdfOptions, {"margin_mm": 15})
    assert options.margin_mm == 15.0 and isinstance(options.margin_mm, float)


@pytest.mark.parametrize(
    "colour", ["#zzzzzz", "white", "#ffff", "#12345g", "ffffff", "#1234567", "", "#ｆｆｆ"]
)
def test_a_colour_that_is_not_hex_is_refused(colour: str) -> None:
    with pytest.raises(InvalidOptions, match="background must be a colour like #fff or #1a2b3c"):
        parse_options(ImageOptions, {"background": colour})


@pytest.mark.parametrize("colour", ["#fff", "#1A2b3C"])
def test_hex_colours_are_accepted(colour: str) -> None:
    assert parse_options(ImageOptions, {"background": colour}).background == colour


@pytest.mark.parametrize(
    "pages", ["abc", "0", "3-1", "1-3-5", "1,,2", "²", "١-٣", "1" * 7, "1;2", "-3", "1-0"]
)
def test_page_ranges_that_name_no_pages_are_refused(pages: str) -> None:
    for options_type in (PdfRenderOptions, PdfEditOptions):
        with pytest.raises(InvalidOptions, match="pages must be page ranges numbered from 1"):
            parse_options(options_type, {"pages": pages})


@pytest.mark.parametrize("pages", ["", "  ", "1", "1-3,5", " 4- ", "2-2", "10-, 1"])
def test_page_ranges_are_accepted(pages: str) -> None:
    assert parse_options(PdfRenderOptions, {"pages": pages}).pages == pages


@pytest.mark.parametrize("ranges", [";", "1-3;x", "1-3;0", "3-1;4", "1-3,;4"])
def test_split_ranges_that_name_no_pages_are_refused(ranges: str) -> None:
    with pytest.raises(InvalidOptions, match="ranges must be groups of page ranges"):
        parse_options(PdfSplitOptions, {"ranges": ranges})


@pytest.mark.parametrize("ranges", ["", "1-3;4-6;7-", "1,3;2", "1-3;;4", "5;"])
def test_split_ranges_are_accepted(ranges: str) -> None:
    assert parse_options(PdfSplitOptions, {"ranges": ranges}).ranges == ranges


@pytest.mark.parametrize("name", ["", "   ", "a" * 32, "Q1/Q2", "[data]", "a:b", "what?"])
def test_a_worksheet_name_excel_refuses_is_refused_at_submit(name: str) -> None:
    with pytest.raises(InvalidOptions, match="sheet_name must be 1 to 31 characters"):
        parse_options(TableXlsxOptions, {"sheet_name": name})


def test_sizes_are_bounded_by_the_output_side_limit_given() -> None:
    limits = Limits(max_output_side_px=5000)
    for options_type, name in ((ImageOptions, "width"), (ImageOptions, "height"),
                               (PdfRenderOptions, "width"), (ContactSheetOptions, "sheet_width_px")):  # fmt: skip
        assert getattr(parse_options(options_type, {name: 5000}, limits=limits), name) == 5000
        with pytest.raises(InvalidOptions, match=f"{name} must be at most 5000"):
            parse_options(options_type, {name: 5001}, limits=limits)
    with pytest.raises(InvalidOptions, match="width must be at most 8192"):
        parse_options(ImageOptions, {"width": 8193}, limits=Limits())


def test_without_limits_a_bound_naming_a_limit_is_left_to_the_converter() -> None:
    # The worker re-reads a job's options without its limits; it enforces them while converting.
    assert parse_options(ImageOptions, {"width": 12000}).width == 12000


def test_string_options_have_a_length_limit() -> None:
    assert parse_options(PdfEditOptions, {"title": "t" * MAX_OPTION_CHARS}).title == "t" * MAX_OPTION_CHARS
    with pytest.raises(InvalidOptions, match=f"title must be at most {MAX_OPTION_CHARS} characters"):
        parse_options(PdfEditOptions, {"title": "t" * (MAX_OPTION_CHARS + 1)})


def test_unknown_option_names_are_not_echoed_without_end() -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_options(ImageOptions, {"x" * 100_000: 1, **{f"k{i}": 1 for i in range(1000)}})
    assert len(caught.value.message) < 2000 and "and 991 more" in caught.value.message


def test_a_declaration_naming_an_unknown_limit_or_syntax_fails_at_import() -> None:
    with pytest.raises(ValueError, match="not a field of Limits"):
        option(1, "x", maximum="max_sides")
    with pytest.raises(ValueError, match="unknown syntax"):
        option("", "x", syntax="color")


def test_formats_shows_the_limit_a_bound_names_and_each_syntax_as_a_pattern() -> None:
    described = describe_options(ImageOptions, limits=Limits(max_output_side_px=1234))
    assert described["width"]["maximum"] == described["height"]["maximum"] == 1234
    assert described["background"]["pattern"] == "^(?:" + SYNTAXES["colour"].pattern + ")$"  # type: ignore[operator]
    assert described["background"]["maxLength"] == MAX_OPTION_CHARS
    pages = describe_options(PdfRenderOptions, limits=Limits())["pages"]
    # The advertised pattern is what the submit check applies (less the semantic check).
    for text in ("1-3,5", "4-", "", "abc", "1-", "²"):
        accepted = re.search(pages["pattern"], text) is not None
        assert accepted == (text in ("1-3,5", "4-", "", "1-")), text


@dataclass(frozen=True)
class _Declared:
    field: dataclasses.Field[Any]
    options_type: type


def _every_option() -> list[_Declared]:
    seen: dict[tuple[type, str], _Declared] = {}
    for conversion in CONVERSIONS:
        for f in dataclasses.fields(conversion.options):
            seen.setdefault((conversion.options, f.name), _Declared(f, conversion.options))
    return list(seen.values())


def test_every_size_colour_and_page_range_option_declares_its_check() -> None:
    """A new option in pixels, a new colour or a new page range cannot slip through unchecked."""
    for declared in _every_option():
        name, meta, doc = declared.field.name, declared.field.metadata, declared.field.metadata["doc"]
        where = f"{declared.options_type.__name__}.{name}"
        if name in ("width", "height") or name.endswith("_px"):
            assert meta["max"] == "max_output_side_px", where
        if re.search(r"\bcolou?r\b", doc, re.IGNORECASE) and declared.field.type in ("str", "str | None"):
            assert meta["syntax"] == "colour", where
        if name in ("pages", "ranges"):
            assert meta["syntax"] in ("page_ranges", "page_range_groups"), where
        if re.fullmatch(r"(int|float|tuple\[int, \.\.\.\])( \| None)?", str(declared.field.type)):
            # A number without both bounds lets 1e300 through to the converter.
            assert meta["choices"] or (meta["min"] is not None and meta["max"] is not None), where
