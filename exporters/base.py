"""What every conversion shares: its inputs and outputs, its errors, and how options are declared.

Converters are pure: files in, files out. They never touch Redis, HTTP or settings objects;
limits arrive as plain values in `Limits`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
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
# the bounds checked by `parse_options`.


def option(
    default: Any,
    doc: str,
    *,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    length: int | None = None,
) -> Any:
    """Declare one option field: its default, the sentence documenting it and its bounds.

    For a list option (annotated `tuple[T, ...]`) the choices and bounds apply to each item, and
    `length` is the exact number of items when there must be that many.
    """
    meta = {
        "doc": doc,
        "choices": tuple(choices) if choices else None,
        "min": minimum,
        "max": maximum,
        "length": length,
    }
    return dataclasses.field(default=default, metadata=meta)


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


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}
_ARTICLE = {"integer": "an", "array": "an"}


def _check_value(name: str, value: Any, base: type, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with one value (or one item of a list), None when it is acceptable."""
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        type_name = _TYPE_NAMES.get(base, base.__name__)
        return f"{name} must be {_ARTICLE.get(type_name, 'a')} {type_name}"
    if meta.get("choices") and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(str(c) for c in meta['choices'])}"
    if meta.get("min") is not None and value < meta["min"]:
        return f"{name} must be at least {meta['min']}"
    if meta.get("max") is not None and value > meta["max"]:
        return f"{name} must be at most {meta['max']}"
    return None


@functools.cache
def _described(options_type: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """An options class's resolved type hints and its fields, worked out once: resolving string
    annotations compiles each of them, which took most of the time of parsing a job's options."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    return typing.get_type_hints(options_type), fields


def parse_options(options_type: type[_T], raw: Mapping[str, Any] | None) -> _T:
    """Build an options object from client JSON.

    Raises InvalidOptions naming every unknown key and every bad value.
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidOptions("options must be a JSON object")
    hints, fields = _described(typing.cast(type, options_type))
    problems: list[str] = []
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        problems.append(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
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
            item_problems = [_check_value(f"each item of {name}", item, item_type, meta) for item in value]
            if any(item_problems):
                problems.append(next(p for p in item_problems if p))
                continue
            # Lists of choices are sets: sorted and deduplicated, so equal requests look equal.
            values[name] = tuple(sorted(set(value))) if meta.get("choices") else tuple(value)
            continue
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = _check_value(name, value, base, meta)
        if problem:
            problems.append(problem)
            continue
        values[name] = value
    if problems:
        raise InvalidOptions("; ".join(problems))
    return options_type(**values)


def describe_options(options_type: type) -> dict[str, dict[str, Any]]:
    """The options of a conversion as shown by GET /v1/formats."""
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
        for key, label in (("choices", "enum"), ("min", "minimum"), ("max", "maximum")):
            if f.metadata.get(key) is not None:
                bounds[label] = list(f.metadata[key]) if key == "choices" else f.metadata[key]
        if item_type:
            entry["items"] = bounds
            if f.metadata.get("length") is not None:
                entry["minItems"] = entry["maxItems"] = f.metadata["length"]
        else:
            entry.update(bounds)
        described[f.name] = entry
    return described


def options_as_dict(options: Any) -> dict[str, Any]:
    """The options a job was accepted with, defaults filled in, as stored in its record (JSON values)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(options).items()}  # fmt: skip
