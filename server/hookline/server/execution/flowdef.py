"""Flow definitions: parse and validate them on Create/Update, then run their steps.

A definition is plain JSON data (it arrives as a protobuf Struct)::

    {"input_schema": {...}, "timeout_seconds": 60,
     "steps": [{"transform": "..."}, {"sleep_ms": 100}, {"fail_if": "...", "message": "..."}]}

Everything that can be checked without an input is checked by `parse_definition`, so a
bad expression is INVALID_ARGUMENT when the flow is saved, not a surprise at run time.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import jmespath
import jsonschema
import re2
import referencing.exceptions
from jmespath import exceptions as jmespath_exceptions
from jmespath.functions import Functions
from jmespath.parser import ParsedResult
from jsonschema.exceptions import ValidationError

from hookline.server import jsonvalue
from hookline.server.errors import FieldViolation, InvalidArgument, shown, storable
from hookline.server.states import JobCode

from . import schemarefs

DEFAULT_TIMEOUT_SECONDS = 3600.0
MAX_TIMEOUT_SECONDS = 86_400.0
MAX_STEPS = 100
MAX_SLEEP_MS = 86_400_000
MAX_EXPRESSION_LENGTH = 4096
DEFAULT_FAIL_MESSAGE = "fail_if condition matched"
# A job's message is stored and sent with its event; an error can quote a whole value.
MAX_MESSAGE_LENGTH = 2000

_TOP_LEVEL_KEYS = ("input_schema", "timeout_seconds", "steps")
_STEP_KINDS = ("transform", "sleep_ms", "fail_if")

# The codes a run that fails ends with (the others are the runner's to give).
JobErrorCode = Literal[JobCode.JOB_EXECUTION_ERROR, JobCode.JOB_VALIDATION_ERROR, JobCode.JOB_TIMEOUT]


@dataclass(frozen=True)
class Step:
    """One step of a flow; see the subclasses."""


@dataclass(frozen=True)
class Transform(Step):
    """The document becomes the expression's result."""

    expression: ParsedResult
    source: str


@dataclass(frozen=True)
class Sleep(Step):
    """Wait `ms` milliseconds; cancellation and the deadline cut it short."""

    ms: int


@dataclass(frozen=True)
class FailIf(Step):
    """End the job in ERROR/JOB_EXECUTION_ERROR with `message` if the expression is truthy."""

    expression: ParsedResult
    message: str
    source: str


@dataclass(frozen=True)
class FlowDefinition:
    input_schema: dict[str, Any] | None
    timeout_seconds: float
    steps: tuple[Step, ...]


class JobFailure(Exception):
    """The run ended in ERROR; .code says how (JobErrorCode), .message is the job's message."""

    def __init__(self, code: JobErrorCode, message: str):
        # An error can quote the job's data, which may hold what no database stores.
        message = storable(message)
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[:MAX_MESSAGE_LENGTH] + "..."
        super().__init__(f"{code}: {message}")
        self.code: JobErrorCode = code
        self.message = message


class Canceled(Exception):
    """The cancel event was set."""


# --------------------------------------------------------------------------- parsing


def parse_definition(raw: dict[str, Any], *, field: str = "flow.definition") -> FlowDefinition:
    """Validate `raw` and compile it. Raises InvalidArgument listing every violation found."""
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(path, description))

    if not isinstance(raw, dict):
        raise InvalidArgument.field(field, f"must be a JSON object, got {_json_type(raw)}")

    for key in raw:
        if key not in _TOP_LEVEL_KEYS:
            bad(f"{field}.{key}", f"unknown key; allowed keys are {', '.join(_TOP_LEVEL_KEYS)}")

    input_schema = None
    if raw.get("input_schema") is not None:
        input_schema = _parse_schema(raw["input_schema"], f"{field}.input_schema", bad)

    timeout_seconds = DEFAULT_TIMEOUT_SECONDS
    if raw.get("timeout_seconds") is not None:
        timeout_seconds = _parse_timeout(raw["timeout_seconds"], f"{field}.timeout_seconds", bad)

    steps: list[Step] = []
    raw_steps = raw.get("steps")
    if raw_steps is not None:
        steps_field = f"{field}.steps"
        if not isinstance(raw_steps, list):
            bad(steps_field, f"must be an array of steps, got {_json_type(raw_steps)}")
        else:
            if len(raw_steps) > MAX_STEPS:
                bad(steps_field, f"has {len(raw_steps)} steps; at most {MAX_STEPS} are allowed")
            for i, raw_step in enumerate(raw_steps):
                step = _parse_step(raw_step, f"{steps_field}[{i}]", bad)
                if step is not None:
                    steps.append(step)

    if violations:
        raise InvalidArgument.fields(violations)
    return FlowDefinition(input_schema=input_schema, timeout_seconds=timeout_seconds, steps=tuple(steps))


_Report = Callable[[str, str], None]


def parse_expression(source: Any, field: str) -> ParsedResult:
    """A JMESPath expression checked as a step's is (syntax, functions and their
    arguments), compiled; InvalidArgument naming `field` otherwise."""
    violations: list[FieldViolation] = []
    compiled = _compile(source, field, lambda path, text: violations.append(FieldViolation(path, text)))
    if compiled is None:
        raise InvalidArgument.fields(violations)
    return compiled


def schema_violations(value: Any, field: str) -> list[FieldViolation]:
    """Every problem of `value` as a JSON Schema, checked as input_schema is
    (the dialect, references inside it only, patterns RE2 can run)."""
    violations: list[FieldViolation] = []
    _parse_schema(value, field, lambda path, text: violations.append(FieldViolation(path, text)))
    return violations


def schema_errors(schema: dict[str, Any], document: Any) -> list[ValidationError]:
    """Where `document` fails a schema schema_violations accepted, best match first;
    patterns run on RE2 and references stay inside the schema, as for inputs."""
    validator = _linear_time(jsonschema.validators.validator_for(schema))(schema, registry=schemarefs.OFFLINE)
    errors = list(validator.iter_errors(document))
    best = jsonschema.exceptions.best_match(errors)
    return [best, *(e for e in errors if e is not best)] if best is not None else []


def truthy(value: Any) -> bool:
    """JMESPath truthiness: only false, null, "", [] and {} are false (0 is true)."""
    return _truthy(value)


def _parse_schema(value: Any, field: str, bad: _Report) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        bad(field, f"must be a JSON Schema object, got {_json_type(value)}")
        return None
    dialect = value.get("$schema")
    if dialect is not None:
        # An unknown $schema would only warn and fall back to the latest draft; say so now.
        if not isinstance(dialect, str):
            bad(f"{field}.$schema", f"must be a string URI, got {_json_type(dialect)}")
            return None
        if jsonschema.validators.validator_for(value, default=None) is None:  # type: ignore[arg-type]
            bad(f"{field}.$schema", f"unknown JSON Schema dialect {dialect!r}; omit it to use draft 2020-12")
            return None
    # What check_schema does, but reporting every problem instead of only the first.
    cls = jsonschema.validators.validator_for(value)
    meta_cls = jsonschema.validators.validator_for(cls.META_SCHEMA, default=cls)
    meta = meta_cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(meta.iter_errors(value), key=lambda e: list(map(str, e.path)))
    for error in errors:
        bad(field + _path_suffix(error.path), f"not a valid JSON Schema: {error.message}")
    # References are followed only in a well-formed schema.
    references = [] if errors else schemarefs.problems(value, field)
    for path, description in references:
        bad(path, description)
    unsupported = False
    for path, pattern in _schema_patterns(value, field):
        try:
            re2.compile(pattern, _RE2_OPTIONS)
        except re2.error as error:
            unsupported = True
            reason = (
                error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
            )
            bad(
                path,
                f"pattern {shown(pattern, 100)} is not supported ({reason}); patterns run on RE2, "
                "which has no look-around or back-references",
            )
    return None if errors or references or unsupported else value


def _parse_timeout(value: Any, field: str, bad: _Report) -> float:
    if not _is_number(value) or not math.isfinite(value):
        shown = f"{value:g}" if _is_number(value) else _json_type(value)
        bad(field, f"must be a number of seconds, got {shown}")
    elif not 0 < value <= MAX_TIMEOUT_SECONDS:
        bad(field, f"must be greater than 0 and at most {MAX_TIMEOUT_SECONDS:g}, got {value:g}")
    else:
        return float(value)
    return DEFAULT_TIMEOUT_SECONDS


def _parse_step(raw: Any, field: str, bad: _Report) -> Step | None:
    if not isinstance(raw, dict):
        bad(field, f"must be an object with one of {', '.join(_STEP_KINDS)}, got {_json_type(raw)}")
        return None

    kinds = [k for k in _STEP_KINDS if k in raw]
    unknown = [k for k in raw if k not in _STEP_KINDS and k != "message"]
    for key in unknown:
        bad(
            f"{field}.{key}",
            f"unknown key; a step has exactly one of {', '.join(_STEP_KINDS)} (plus message with fail_if)",
        )
    if not kinds and not unknown:
        # With an unknown key present that violation already says what is allowed.
        bad(field, f"empty step; give exactly one of {', '.join(_STEP_KINDS)}")
    if len(kinds) > 1:
        bad(field, f"has {' and '.join(kinds)}; a step must have exactly one of {', '.join(_STEP_KINDS)}")
    if "message" in raw and "fail_if" not in raw:
        bad(f"{field}.message", "only allowed with fail_if")

    # Check every value present, even in a step already known to be bad, so all problems show up.
    expression = None
    if "transform" in raw:
        expression = _compile(raw["transform"], f"{field}.transform", bad)
    ms = None
    if "sleep_ms" in raw:
        ms = _parse_sleep(raw["sleep_ms"], f"{field}.sleep_ms", bad)
    if "fail_if" in raw:
        expression = _compile(raw["fail_if"], f"{field}.fail_if", bad)
    message = DEFAULT_FAIL_MESSAGE
    if "message" in raw:
        if isinstance(raw["message"], str) and raw["message"].strip():
            message = raw["message"]
        else:
            bad(f"{field}.message", "must be a non-empty string (omit it for the default message)")

    if len(kinds) != 1 or unknown:
        return None
    kind = kinds[0]
    if kind == "sleep_ms":
        return None if ms is None else Sleep(ms)
    if expression is None:
        return None
    if kind == "transform":
        return Transform(expression, raw["transform"])
    return FailIf(expression, message, raw["fail_if"])


def _parse_sleep(value: Any, field: str, bad: _Report) -> int | None:
    # Struct numbers arrive as floats: 100.0 is a fine integer, 100.5 is not.
    if not _is_number(value) or not math.isfinite(value) or value != int(value):
        shown = f"{value:g}" if _is_number(value) else _json_type(value)
        bad(field, f"must be a whole number of milliseconds, got {shown}")
        return None
    if not 0 <= value <= MAX_SLEEP_MS:
        bad(field, f"must be between 0 and {MAX_SLEEP_MS} (24 hours), got {value:g}")
        return None
    return int(value)


# jmespath warns (rather than fails) on the deprecated `foo` literal syntax; turning that
# warning into an error touches process-wide warning filters, hence the lock.
_compile_lock = threading.Lock()


def _compile(source: Any, field: str, bad: _Report) -> ParsedResult | None:
    if not isinstance(source, str) or not source.strip():
        bad(field, f"must be a non-empty JMESPath expression string, got {_describe(source)}")
        return None
    if len(source) > MAX_EXPRESSION_LENGTH:
        bad(field, f"is {len(source)} characters; the limit is {MAX_EXPRESSION_LENGTH}")
        return None
    try:
        with _compile_lock, warnings.catch_warnings():
            warnings.simplefilter("error", PendingDeprecationWarning)
            compiled = jmespath.compile(source)
    except PendingDeprecationWarning:
        bad(
            field,
            f"invalid JMESPath expression {shown(source, 200)}: a `...` literal must be valid JSON; "
            "write strings as 'raw string' or `\"json string\"`",
        )
        return None
    except jmespath_exceptions.JMESPathError as e:
        bad(field, f"invalid JMESPath expression {shown(source, 200)}: {_describe_parse_error(e)}")
        return None
    except RecursionError:
        bad(field, f"JMESPath expression {shown(source, 200)} is nested too deeply")
        return None
    # jmespath resolves function names and argument counts only when called; check them now.
    try:
        problems = list(_function_problems(compiled.parsed))
    except RecursionError:
        bad(field, f"JMESPath expression {shown(source, 200)} is nested too deeply")
        return None
    for problem in problems:
        bad(field, f"invalid JMESPath expression {shown(source, 200)}: {problem}")
    return None if problems else compiled


def _describe_parse_error(e: jmespath_exceptions.JMESPathError) -> str:
    # jmespath's own text spans several lines with a caret drawing; keep it to one line.
    if isinstance(e, jmespath_exceptions.IncompleteExpressionError):
        return f"incomplete expression at column {e.lex_position}"
    if isinstance(e, jmespath_exceptions.LexerError):
        return f"{e.message} at column {e.lexer_position}"
    if isinstance(e, jmespath_exceptions.ParseError):
        near = "" if e.token_value is None else f" near {str(e.token_value)!r}"
        return f"{e.msg} at column {e.lex_position}{near}"
    return str(e)


def _function_problems(node: Any) -> Iterator[str]:
    if not isinstance(node, dict):
        return  # slice bounds and the like
    if node.get("type") == "function_expression":
        name = node["value"]
        args = len(node["children"])
        spec = Functions.FUNCTION_TABLE.get(name)
        if spec is None:
            yield f"unknown function {name}()"
        else:
            signature = spec["signature"]
            if signature and signature[-1].get("variadic"):
                if args < len(signature):
                    yield f"{name}() takes at least {_plural(len(signature))}, got {args}"
            elif args != len(signature):
                yield f"{name}() takes {_plural(len(signature))}, got {args}"
    if node.get("type") == "literal":
        return  # its value is data, not syntax
    for child in node.get("children", ()):
        yield from _function_problems(child)


# --------------------------------------------------------------------------- running


def needs_worker(definition: FlowDefinition) -> bool:
    """Whether a run computes anything (validates the input, or has a transform or
    fail_if step): such runs go to a worker process, where they can be stopped."""
    return definition.input_schema is not None or any(not isinstance(step, Sleep) for step in definition.steps)


def run(
    definition: FlowDefinition,
    document: Any,
    *,
    cancel: threading.Event,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Apply the steps to `document` (the job input) and return the output, in this thread.

    `deadline` is on `clock`'s scale. Raises Canceled when `cancel` is set, JobFailure when the
    run ends in ERROR.
    """
    evaluation = evaluate(definition, document, cancel=cancel, deadline=deadline, clock=clock)
    try:
        while True:
            wait_out(next(evaluation), definition, cancel=cancel, deadline=deadline, clock=clock)
    except StopIteration as finished:
        return finished.value


def evaluate(
    definition: FlowDefinition,
    document: Any,
    *,
    deadline: float,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[Sleep, None, Any]:
    """Validate the input and apply the steps, yielding each Sleep step for the
    caller to wait out (see wait_out); returns the output.

    Raises Canceled, JobFailure, or OutOfMemory naming the part that ran out.
    """
    if definition.input_schema is not None:
        _check_input_within_memory(definition.input_schema, document)
    for i, step in enumerate(definition.steps):
        if cancel is not None and cancel.is_set():
            raise Canceled()
        if clock() >= deadline:
            raise _timeout(definition)
        if isinstance(step, Sleep):
            yield step
        elif isinstance(step, (Transform, FailIf)):
            document = _apply_within_memory(step, document, i)
        else:  # pragma: no cover - parse_definition builds only the kinds above
            raise TypeError(f"unknown step type {type(step).__name__}")
    return document


def wait_out(
    step: Sleep,
    definition: FlowDefinition,
    *,
    cancel: threading.Event,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Sleep for the step, until the deadline at most; cancellation interrupts it at once."""
    wanted = step.ms / 1000
    remaining = deadline - clock()
    if cancel.wait(max(0.0, min(wanted, remaining))):
        raise Canceled()
    # Judge by what was asked rather than re-reading the clock, so a sleep that ends
    # exactly at the deadline is a timeout and one that ends before it is not.
    if wanted >= remaining:
        raise _timeout(definition)


class OutOfMemory(Exception):
    """Validating the input or a step ran out of memory; .part names which
    ("input validation", "step 3")."""

    def __init__(self, part: str):
        super().__init__(f"{part} ran out of memory")
        self.part = part


def _check_input_within_memory(schema: dict[str, Any], document: Any) -> None:
    # OutOfMemory is raised outside the handler, so that the MemoryError's
    # traceback, and whatever its frames held, is gone by then.
    try:
        _check_input(schema, document)
        return
    except MemoryError:
        pass
    raise OutOfMemory("input validation")


def _apply_within_memory(step: Transform | FailIf, document: Any, index: int) -> Any:
    try:
        return _apply(step, document, index)
    except MemoryError:
        pass
    raise OutOfMemory(f"step {index}")


def _apply(step: Transform | FailIf, document: Any, index: int) -> Any:
    if isinstance(step, Transform):
        return _search(step.expression, document, index)
    if _truthy(_search(step.expression, document, index)):
        raise JobFailure(JobCode.JOB_EXECUTION_ERROR, step.message)
    return document


def output_source(definition: FlowDefinition) -> str:
    """What made a run's output, for the errors that refuse it: the last
    transform step (a fail_if passes the document on), or the input."""
    last = max((i for i, step in enumerate(definition.steps) if isinstance(step, Transform)), default=None)
    return "the input" if last is None else f"step {last}"


def output_json(output: Any, *, source: str, max_bytes: int, max_depth: int) -> str:
    """The output as JSON text, or JobFailure naming `source` (output_source)
    when it is too large, too deep, or holds what JSON text and protobuf cannot
    (an unpaired surrogate, NaN, an infinity, a huge integer): stored, such an
    output could be neither read back nor sent.

    The size is bounded first, at a cost that grows with the limit rather than the
    output: steps can build a value that shares its parts (`[@, @]` repeated)
    whose text would take gigabytes."""
    try:
        jsonvalue.check_size(output, field="output", max_bytes=max_bytes)
        jsonvalue.check_depth(output, field="output", max_depth=max_depth)
        jsonvalue.check_representable(output, field="output")
        data = jsonvalue.dumps(output)
        if len(data) > max_bytes:
            raise InvalidArgument.field("output", f"is {len(data)} bytes as JSON; the limit is {max_bytes} bytes")
    except InvalidArgument as error:
        raise JobFailure(JobCode.JOB_EXECUTION_ERROR, f"{source}: {error.message}") from None
    return data.decode()


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not re2.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _re2_pattern_properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if re2.search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: dict[Any, int] = {}
    for index, item in enumerate(instance):
        first = seen.setdefault(_comparable(item), index)
        if first != index:
            yield ValidationError(f"has non-unique elements: items {first} and {index} are equal")
            return


_TRUE, _FALSE = object(), object()


def _comparable(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal for values JSON Schema calls
    equal: 1 and 1.0 are, true and 1 are not, and object keys have no order."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, dict):
        return frozenset((key, _comparable(item)) for key, item in value.items())
    if isinstance(value, list):
        return tuple(_comparable(item) for item in value)
    return value


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the violation says it; no stray lines on stderr


@cache
def _linear_time(cls: Any) -> Any:
    """The dialect's validator with patterns run by RE2, whose matching time is
    linear in the input, so no schema can make a job backtrack for hours (Python's
    `re` would), and uniqueItems compared by hashing, in linear time rather than
    jsonschema's quadratic pairwise comparison (3,000 objects took 13 s)."""
    return jsonschema.validators.extend(
        cls,
        {"pattern": _re2_pattern, "patternProperties": _re2_pattern_properties, "uniqueItems": _unique_items},
    )


def _schema_patterns(schema: Any, field: str) -> Iterator[tuple[str, str]]:
    """(field path, pattern) of every regular expression in a schema."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield f"{field}.pattern", value
            elif key == "patternProperties" and isinstance(value, dict):
                for pattern in value:
                    yield f"{field}.patternProperties", pattern
            yield from _schema_patterns(value, f"{field}.{key}")
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from _schema_patterns(item, f"{field}[{i}]")


def _check_input(schema: dict[str, Any], document: Any) -> None:
    # OFFLINE: references are followed inside the schema only, never fetched.
    validator = _linear_time(jsonschema.validators.validator_for(schema))(schema, registry=schemarefs.OFFLINE)
    try:
        errors = list(validator.iter_errors(document))
    except referencing.exceptions.Unresolvable as e:
        # Only a definition stored before references were checked on save gets here.
        raise JobFailure(
            JobCode.JOB_VALIDATION_ERROR, f"input_schema cannot be applied: {e}; only references inside it are followed"
        ) from None
    except RecursionError:
        raise JobFailure(JobCode.JOB_VALIDATION_ERROR, "input_schema refers to itself without end") from None
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    assert best is not None  # errors is non-empty
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = jsonvalue.path_text("input", best.absolute_path)
    raise JobFailure(
        JobCode.JOB_VALIDATION_ERROR, f"input does not match input_schema at {where}: {best.message}{more}"
    )


def _search(expression: ParsedResult, document: Any, index: int) -> Any:
    try:
        return expression.search(document)
    except jmespath_exceptions.JMESPathError as e:
        raise JobFailure(JobCode.JOB_EXECUTION_ERROR, f"step {index}: {e}") from None
    except RecursionError:
        raise JobFailure(
            JobCode.JOB_EXECUTION_ERROR, f"step {index}: the document is nested too deeply for it"
        ) from None
    except (ArithmeticError, ValueError, TypeError) as e:
        # jmespath's functions compute in Python: sum() of a huge integer and a float overflows.
        raise JobFailure(JobCode.JOB_EXECUTION_ERROR, f"step {index}: cannot compute its value: {e}") from None


def _truthy(value: Any) -> bool:
    # JMESPath truthiness differs from Python's: 0 is true; only false, null, "", [] and {} are false.
    return not (value is None or value is False or value == "" or value == [] or value == {})


def timeout_message(timeout_seconds: float) -> str:
    return f"timed out after {timeout_seconds:g} s (timeout_seconds)"


def _timeout(definition: FlowDefinition) -> JobFailure:
    return JobFailure(JobCode.JOB_TIMEOUT, timeout_message(definition.timeout_seconds))


# --------------------------------------------------------------------------- helpers


def _path_suffix(path: Any) -> str:
    return jsonvalue.path_text("", path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(value: Any) -> str:
    return "an empty string" if isinstance(value, str) else _json_type(value)


def _plural(count: int) -> str:
    return f"{count} argument" if count == 1 else f"{count} arguments"
