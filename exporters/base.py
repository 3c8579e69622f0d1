"""What every conversion shares: its inputs and outputs, its errors, and how options are declared.

Converters are pure: files in, files out. They never touch Redis, HTTP or settings objects;
limits arrive as plain values in `Limits`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar


class ConversionError(Exception):
    """A user error: the input or the request cannot be converted. Never retried."""

    code: ClassVar[str] = "conversion_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedInput(ConversionError):
    code = "unsupported_input"


class CorruptInput(ConversionError):
    code = "corrupt_input"


class InputTooLarge(ConversionError):
    code = "input_too_large"


class InvalidOptions(ConversionError):
    code = "invalid_options"


class UnsupportedConversion(ConversionError):
    code = "unsupported_conversion"


class EncryptedInput(ConversionError):
    """A PDF protected by a password that was not given, or was wrong."""

    code = "encrypted_input"


@dataclass(frozen=True)
class InputFile:
    """One input of a job, already on local disk."""

    path: Path
    filename: str  # the name the client gave, for output names and captions
    content_type: str  # sniffed from the bytes, see exporters.sniff


def describe(source: InputFile) -> str:
    """How an error message names an input: the client's file name, quoted."""
    return f'"{source.filename}"' if source.filename else "the file"


@contextmanager
def reading_input(source: InputFile, what: str = "file") -> Iterator[None]:
    """The boundary around everything that reads or decodes an input: what a reader raises is the input's fault.

    Decoders fail on damaged files in every way there is (Pillow alone raises OSError, ValueError,
    SyntaxError, struct.error, EOFError, TypeError, IndexError, ...), so no list of exception types
    can be complete: anything an `Exception` raised here becomes CorruptInput, never retried, with
    the decoder's own words kept as the cause for the worker's log. Let through unchanged:
    ConversionError (already a verdict), MemoryError (the actor's to judge) and an OSError that
    carries an errno: the operating system failing on our own files (ENOSPC, EIO, ...), a fault of
    ours that a retry may cure. Decoders raise OSError with a message only, never an errno.
    BaseException (a time limit, an interrupt) is not an `Exception` and passes as well.

    Raises CorruptInput.
    """
    try:
        yield
    except (ConversionError, MemoryError):
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise CorruptInput(_unreadable(source, what)) from exc
    except Exception as exc:
        raise CorruptInput(_unreadable(source, what)) from exc


def _unreadable(source: InputFile, what: str) -> str:
    return (
        f"{describe(source)} cannot be read as a {what}: it is damaged or incomplete, or a variant of the "
        "format this service does not decode"
    )


@dataclass(frozen=True)
class OutputFile:
    """One finished output, written completely under the converter's out_dir."""

    path: Path
    name: str  # the download name, unique within the job
    content_type: str
    # Facts about the output worth showing the client, as JSON values (e.g. the metadata removed:
    # {"metadata": {"removed": ["exif", "gps"], "kept": []}}); empty when there is nothing to say.
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """Resource limits a converter must enforce before doing expensive work."""

    max_pixels: int = 50_000_000  # per frame, checked from the header before decoding
    max_output_side_px: int = 8192  # neither side of any produced image may exceed this
    max_pages: int = 500
    max_frames: int = 100  # frames of an animation (or pages of a TIFF) decoded from one input
    # width × height × frames of one input whose frames are all decoded, checked before decoding;
    # also bounds the frames an animated output holds in memory
    max_total_pixels: int = 500_000_000
    max_table_pages: int = 50_000  # pages of a table PDF (a million CSV rows take about 45,000)
    office_timeout_s: float = 120.0  # LibreOffice is killed (its whole process group) after this


OptionsT = TypeVar("OptionsT", contravariant=True)


class Converter(Protocol[OptionsT]):
    def __call__(
        self,
        inputs: Sequence[InputFile],
        out_dir: Path,
        options: OptionsT,
        *,
        limits: Limits,
    ) -> list[OutputFile]: ...


# -- options -------------------------------------------------------------------------------
#
# Options are flat JSON objects. Each conversion declares a frozen dataclass; every field has
# a default and its metadata (made by `option`) carries the sentence shown in /v1/formats and
# everything `parse_options` checks before a job is accepted: type, choices, bounds, number of
# items, length and syntax of strings. A bound may name a field of `Limits`
# (maximum="max_output_side_px"): the service's own limit is then the one source of both the
# check and the figure /v1/formats shows.

#: Longest string option unless its declaration says otherwise: room for any title, header or
#: password, but a megabyte of "title" is refused instead of stored in the job and drawn on every page.
MAX_OPTION_CHARS = 1000


@dataclass(frozen=True)
class Syntax:
    """What a string option must look like.

    `pattern` must match the whole value; /v1/formats shows it as a JSON Schema `pattern`, so it
    keeps to what Python and ECMAScript regular expressions agree on ([0-9], never \\d, which
    Python lets match any script's digits). `check` says what a pattern cannot: a reason the value
    is wrong, or None.
    """

    pattern: str | None
    expected: str  # completes "<option> must be ...": what a valid value looks like
    check: Callable[[str], str | None] | None = None


# A page number has at most 6 digits: far above any page limit, and int() of it is cheap.
_PAGE_RANGE = r"\s*[0-9]{1,6}\s*(?:-\s*(?:[0-9]{1,6}\s*)?)?"
_PAGE_RANGES = rf"{_PAGE_RANGE}(?:,{_PAGE_RANGE})*"
_BLANK_OR_RANGES = rf"(?:\s*|{_PAGE_RANGES})"


def _pages_from_1(text: str) -> str | None:
    """Why a text that matches the page-range pattern still names no pages, None when it does."""
    if text.strip() and not any(group.strip() for group in text.split(";")):
        return "it names no pages"
    for part in re.split("[,;]", text):
        numbers = [int(n) for n in re.findall("[0-9]+", part)]
        if numbers and (numbers[0] < 1 or (len(numbers) == 2 and numbers[1] < numbers[0])):
            return f"{part.strip()!r} is not a range of pages numbered from 1"
    return None


def _worksheet_name(text: str) -> str | None:
    name = text.strip()  # as the XLSX writer uses it
    forbidden = re.search(r"[\[\]:*?/\\]", name)
    if not name:
        return "it is empty"
    if len(name) > 31:
        return f"it has {len(name)}"
    return f"it contains {forbidden.group()!r}" if forbidden else None


#: The syntaxes an option may declare (`option(..., syntax="colour")`), by name.
SYNTAXES: dict[str, Syntax] = {
    "colour": Syntax(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", "a colour like #fff or #1a2b3c"),
    "page_ranges": Syntax(
        _BLANK_OR_RANGES, 'page ranges numbered from 1, like "1-3,5" or "4-" (empty for all)', _pages_from_1
    ),
    "page_range_groups": Syntax(
        rf"{_BLANK_OR_RANGES}(?:;{_BLANK_OR_RANGES})*",
        'groups of page ranges numbered from 1, separated by ";", like "1-3;4-6;7-"',
        _pages_from_1,
    ),
    "worksheet_name": Syntax(None, "1 to 31 characters, none of []:*?/\\", _worksheet_name),
}

_LIMIT_NAMES = frozenset(f.name for f in dataclasses.fields(Limits))


def option(
    default: Any,
    doc: str,
    *,
    choices: Sequence[Any] | None = None,
    minimum: float | str | None = None,
    maximum: float | str | None = None,
    length: int | None = None,
    max_length: int | None = None,
    syntax: str | None = None,
    secret: bool = False,
) -> Any:
    """Declare one option field: its default, the sentence documenting it and what a value must be.

    A `secret` option (a password) is never shown back and never stored readable: the API seals
    it in the job record (storage/sealing.py) and the worker unseals it for the conversion.

    For a list option (annotated `tuple[T, ...]`) the choices and bounds apply to each item, and
    `length` is the exact number of items when there must be that many. A bound given as a string
    names a field of `Limits`. A string option is at most `max_length` characters (default
    MAX_OPTION_CHARS) and, with `syntax`, follows that entry of SYNTAXES.
    """
    for bound in (minimum, maximum):
        if isinstance(bound, str) and bound not in _LIMIT_NAMES:
            raise ValueError(f"{bound!r} is not a field of Limits")
    if syntax is not None and syntax not in SYNTAXES:
        raise ValueError(f"unknown syntax {syntax!r}; known: {', '.join(SYNTAXES)}")
    meta = {
        "doc": doc,
        "choices": tuple(choices) if choices else None,
        "min": minimum,
        "max": maximum,
        "length": length,
        "max_length": max_length,
        "syntax": syntax,
        "secret": secret,
    }
    return dataclasses.field(default=default, metadata=meta)


def secret_options(options_type: type) -> frozenset[str]:
    """The names of the options declared secret."""
    return frozenset(f.name for f in dataclasses.fields(options_type) if f.metadata.get("secret"))


_T = TypeVar("_T")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the JSON-facing Python type, whether null is allowed) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _item_type(annotation: Any) -> type | None:
    """The item type of a list option (`tuple[T, ...]`), None for a single value."""
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0]  # type: ignore[no-any-return]
    return None


def _bound(declared: float | str | None, limits: Limits | None) -> float | None:
    """A declared bound as a number; one naming a limit is None when no limits are given."""
    if isinstance(declared, str):
        return None if limits is None else int(getattr(limits, declared))
    return declared


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}
_ARTICLE = {"integer": "an", "array": "an"}


def _check_value(
    name: str, value: Any, base: type, meta: Mapping[str, Any], limits: Limits | None
) -> str | None:
    """What is wrong with one value (or one item of a list), None when it is acceptable."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not (isinstance(value, base) or (base is float and is_int)) or (base is int and not is_int):
        type_name = _TYPE_NAMES.get(base, base.__name__)
        return f"{name} must be {_ARTICLE.get(type_name, 'a')} {type_name}"
    # NaN passes every comparison below, and JSON (hence JavaScript) cannot carry it or infinity.
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number"
    if base is float and is_int and abs(value) > sys.float_info.max:
        return f"{name} must be a finite number"
    if meta.get("choices") and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(str(c) for c in meta['choices'])}"
    low, high = _bound(meta.get("min"), limits), _bound(meta.get("max"), limits)
    if low is not None and value < low:
        return f"{name} must be at least {low}"
    if high is not None and value > high:
        return f"{name} must be at most {high}"
    if isinstance(value, str):
        max_length = meta.get("max_length") or MAX_OPTION_CHARS
        if len(value) > max_length:
            return f"{name} must be at most {max_length} characters long"
        syntax = SYNTAXES[meta["syntax"]] if meta.get("syntax") else None
        if syntax is not None:
            shown = value if len(value) <= 40 else value[:40] + "…"
            if syntax.pattern is not None and not re.fullmatch(syntax.pattern, value):
                return f"{name} must be {syntax.expected}, not {shown!r}"
            reason = syntax.check(value) if syntax.check else None
            if reason:
                return f"{name} must be {syntax.expected}: {reason}"
    return None


@functools.cache
def _described(options_type: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """An options class's resolved type hints and its fields, worked out once: resolving string
    annotations compiles each of them, which took most of the time of parsing a job's options."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    return typing.get_type_hints(options_type), fields


def parse_options(
    options_type: type[_T], raw: Mapping[str, Any] | None, *, limits: Limits | None = None
) -> _T:
    """Build an options object from client JSON.

    `limits` gives the figures of bounds that name a limit; without them those bounds are left to
    the converter, which enforces its limits itself.

    Raises InvalidOptions naming every unknown key and every bad value.
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidOptions("options must be a JSON object")
    hints, fields = _described(typing.cast(type, options_type))
    problems: list[str] = []
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        shown = [name if len(name) <= 40 else name[:40] + "…" for name in unknown[:10]]
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        problems.append(f"unknown option(s) {', '.join(shown)}{more}; known: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            continue
        meta = fields[name].metadata
        base, nullable = _base_type(hints[name])
        if value is None:
            if not nullable:
                problems.append(f"{name} must not be null")
            values[name] = None
            continue
        item_type = _item_type(base)
        if item_type is not None:
            if not isinstance(value, list):
                problems.append(f"{name} must be an array")
                continue
            if meta.get("length") is not None and len(value) != meta["length"]:
                problems.append(f"{name} must have exactly {meta['length']} items")
                continue
            item_problems = (
                _check_value(f"each item of {name}", item, item_type, meta, limits) for item in value
            )
            problem = next((p for p in item_problems if p), None)
            if problem:
                problems.append(problem)
                continue
            # Lists of choices are sets: sorted and deduplicated, so equal requests look equal.
            values[name] = tuple(sorted(set(value))) if meta.get("choices") else tuple(value)
            continue
        problem = _check_value(name, value, base, meta, limits)
        if problem:
            problems.append(problem)
            continue
        values[name] = float(value) if base is float else value
    if problems:
        raise InvalidOptions("; ".join(problems))
    return options_type(**values)


def describe_options(options_type: type, *, limits: Limits) -> dict[str, dict[str, Any]]:
    """The options of a conversion as shown by GET /v1/formats, bounds that name a limit read from `limits`."""
    hints = typing.get_type_hints(options_type)
    described: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(options_type):
        base, nullable = _base_type(hints[f.name])
        item_type = _item_type(base)
        entry: dict[str, Any] = {
            "type": "array" if item_type else _TYPE_NAMES.get(base, base.__name__),
            "default": list(f.default) if isinstance(f.default, tuple) else f.default,
            "description": f.metadata.get("doc", ""),
        }
        if nullable:
            entry["nullable"] = True
        bounds: dict[str, Any] = {}
        if item_type:
            bounds["type"] = _TYPE_NAMES.get(item_type, item_type.__name__)
        if f.metadata.get("choices") is not None:
            bounds["enum"] = list(f.metadata["choices"])
        for key, label in (("min", "minimum"), ("max", "maximum")):
            if f.metadata.get(key) is not None:
                bounds[label] = _bound(f.metadata[key], limits)
        if (item_type or base) is str and not f.metadata.get("choices"):
            bounds["maxLength"] = f.metadata.get("max_length") or MAX_OPTION_CHARS
            syntax = SYNTAXES[f.metadata["syntax"]] if f.metadata.get("syntax") else None
            if syntax is not None and syntax.pattern is not None:
                bounds["pattern"] = f"^(?:{syntax.pattern})$"
        if item_type:
            entry["items"] = bounds
            if f.metadata.get("length") is not None:
                entry["minItems"] = entry["maxItems"] = f.metadata["length"]
        else:
            entry.update(bounds)
        if f.metadata.get("secret"):
            entry["writeOnly"] = True  # never shown back
        described[f.name] = entry
    return described


def options_as_dict(options: Any) -> dict[str, Any]:
    """The options a job was accepted with, defaults filled in, as stored in its record (JSON values)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(options).items()}  # fmt: skip
