"""What every conversion shares: its inputs and outputs, its errors, and how options are declared.

Converters are pure: files in, files out. They never touch Redis, HTTP or settings objects;
limits arrive as plain values in `Limits`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class OutputFile:
    """One finished output, written completely under the converter's out_dir."""

    path: Path
    name: str  # the download name, unique within the job
    content_type: str


@dataclass(frozen=True)
class Limits:
    """Resource limits a converter must enforce before doing expensive work."""

    max_pixels: int = 50_000_000  # per frame, checked from the header before decoding
    max_output_side_px: int = 8192  # neither side of any produced image may exceed this
    max_pages: int = 500


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
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """Declare one option field: its default, the sentence documenting it and its bounds."""
    meta = {"doc": doc, "choices": tuple(choices) if choices else None, "min": minimum, "max": maximum}
    return dataclasses.field(default=default, metadata=meta)


_T = TypeVar("_T")


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(the JSON-facing Python type, whether null is allowed) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}
_ARTICLE = {"integer": "an"}


def parse_options(options_type: type[_T], raw: Mapping[str, Any] | None) -> _T:
    """Build an options object from client JSON.

    Raises InvalidOptions naming every unknown key and every bad value.
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise InvalidOptions("options must be a JSON object")
    hints = typing.get_type_hints(options_type)
    fields = {f.name: f for f in dataclasses.fields(options_type)}  # type: ignore[arg-type]
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
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, base) or (base is int and isinstance(value, bool)):
            type_name = _TYPE_NAMES.get(base, base.__name__)
            problems.append(f"{name} must be {_ARTICLE.get(type_name, 'a')} {type_name}")
            continue
        if meta.get("choices") and value not in meta["choices"]:
            problems.append(f"{name} must be one of {', '.join(meta['choices'])}")
            continue
        if meta.get("min") is not None and value < meta["min"]:
            problems.append(f"{name} must be at least {meta['min']}")
            continue
        if meta.get("max") is not None and value > meta["max"]:
            problems.append(f"{name} must be at most {meta['max']}")
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
        entry: dict[str, Any] = {
            "type": _TYPE_NAMES.get(base, base.__name__),
            "default": f.default,
            "description": f.metadata.get("doc", ""),
        }
        if nullable:
            entry["nullable"] = True
        for key, label in (("choices", "enum"), ("min", "minimum"), ("max", "maximum")):
            if f.metadata.get(key) is not None:
                entry[label] = list(f.metadata[key]) if key == "choices" else f.metadata[key]
        described[f.name] = entry
    return described


def options_as_dict(options: Any) -> dict[str, Any]:
    """The options a job was accepted with, defaults filled in, as stored in its record."""
    return dataclasses.asdict(options)
