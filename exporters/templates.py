"""HTML templates filled with data: Jinja2 in its sandbox, autoescaped, with no file or import.

The sandbox refuses attribute access to Python internals (`__class__`, `__globals__`, `mro`, a
function's code...) and calls of unsafe methods, and caps `range()`; every `{{ value }}` is
HTML-escaped unless the template says `|safe`. No loader: `include`, `import` and `extends` find
nothing. A template that computes forever is stopped by the job's time limit like any conversion;
one that writes forever is stopped here, at MAX_RENDERED_CHARS.

Every error a template can make (syntax, an undefined variable when `strict`, a refused attribute,
a division by zero) becomes InvalidTemplate naming the line, without a Python traceback.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from exporters.base import ConversionError, InputTooLarge

#: The most characters a template may produce for one document: far above any invoice or report
#: (a 50-page report is about 300 KB of HTML), and stops a loop that writes forever within seconds.
MAX_RENDERED_CHARS = 20_000_000

_TEMPLATE_NAME = "<template>"  # the file name Jinja gives the template's code: its frames carry the line


class InvalidTemplate(ConversionError):
    code = "invalid_template"


class _NoFiles(jinja2.BaseLoader):
    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Any]:
        raise jinja2.TemplateNotFound(template, "templates cannot include, import or extend other files")


class Template:
    """One compiled template. Raises InvalidTemplate (a syntax error) when made."""

    def __init__(self, source: str, *, strict: bool, what: str) -> None:
        self._what = what
        environment = ImmutableSandboxedEnvironment(
            autoescape=True,
            loader=_NoFiles(),
            undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
            extensions=[],
        )
        try:
            self._template = environment.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidTemplate(
                f"{what} is not a valid template: line {exc.lineno}: {exc.message}"
            ) from None
        except (RecursionError, SyntaxError):
            # Jinja compiles a template to Python, whose compiler refuses more than 20 nested loops
            # and runs out of stack on thousands of nested blocks.
            raise InvalidTemplate(
                f"{what} nests its blocks deeper than templates may (about 20 loops)"
            ) from None

    def render(self, context: Mapping[str, Any], *, record: str = "") -> str:
        """The document for these values; `record` says which record in messages ("" for none).

        Raises InvalidTemplate (with the line), InputTooLarge (over MAX_RENDERED_CHARS).
        """
        parts: list[str] = []
        size = 0
        try:
            for part in self._template.generate(context):
                size += len(part)
                if size > MAX_RENDERED_CHARS:
                    raise InputTooLarge(
                        f"{self._what}{record} writes more than {MAX_RENDERED_CHARS:,} characters, the limit"
                    )
                parts.append(part)
        except ConversionError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise InvalidTemplate(self._failure(exc, record)) from None
        return "".join(parts)

    def _failure(self, exc: Exception, record: str) -> str:
        line = _template_line(exc)
        where = f" at line {line}" if line else ""
        if isinstance(exc, jinja2.UndefinedError | jinja2.TemplateNotFound):
            reason = str(exc.message or exc)
        elif isinstance(exc, jinja2.TemplateError):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        if len(reason) > 300:
            reason = reason[:300] + "…"
        return f"{self._what}{record} failed{where}: {reason}"


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja rewrites tracebacks so its frames carry it."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == _TEMPLATE_NAME]
    return frames[-1].lineno if frames else None
