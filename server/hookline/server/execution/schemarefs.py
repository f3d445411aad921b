"""References in a flow's input_schema are followed inside the schema only.

Left to itself, jsonschema follows a `$ref` wherever it points: what the schema
does not hold it fetches (http://, https://, file://) with no allow-list and
no timeout, around the SSRF guard, and what came back can show in the job's
error. A `$ref` that never answers held a job worker forever. So a flow's
schema must be whole in itself:

* When the flow is saved, every `$ref`, `$dynamicRef` and `$recursiveRef` is
  resolved against the schema alone (with its `$id`s and anchors); one that
  points outside it, at nothing, or at something that is not a schema is a
  field violation on that reference.
* A loop of references that comes back to where it started without
  descending into a part of the input (`{"$ref": "#"}`, or two `$defs` that
  refer to each other) would recurse without end on any input, so it is
  refused too. Recursion through `properties`, `items` and the other
  keywords that apply to a part of the input (a tree's children) is fine.
* At run time the validator gets `OFFLINE`, a registry that refuses every
  retrieval, so even a definition stored before these checks fetches nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import referencing
import referencing.exceptions
import referencing.jsonschema

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by the package

from hookline.server.errors import shown

REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
MAX_LOOPS_REPORTED = 10

# Where subschemas sit, by whether they apply to the same instance ("in place")
# or to a part of it; the union over the drafts jsonschema knows.
_IN_PLACE = ("not", "if", "then", "else")
_IN_PLACE_ARRAYS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAPS = ("dependentSchemas", "dependencies")
_PART: tuple[str, ...] = ("additionalProperties", "additionalItems", "contains", "propertyNames", "unevaluatedItems")
_PART += ("unevaluatedProperties", "items")
_PART_ARRAYS = ("prefixItems", "items")
_PART_MAPS = ("properties", "patternProperties")
# Applied only where something refers to them.
_UNAPPLIED = ("contentSchema",)
_UNAPPLIED_MAPS = ("$defs", "definitions")


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class mypy cannot see into


OFFLINE: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


@dataclass
class _Edge:
    """From one subschema to another applied to the same instance: a child
    (reference is None) or the target of a reference."""

    target: int
    reference: _Reference | None = None


@dataclass(frozen=True)
class _Reference:
    field: str
    keyword: str
    value: str
    order: int  # of appearance in the schema

    def __str__(self) -> str:
        return f"{self.keyword} {shown(self.value, 100)}"


@dataclass
class _Subschema:
    field: str
    resolver: Resolver[Any]
    edges: list[_Edge] = dataclasses.field(default_factory=list)  # `field` names the attribute above


_MEMBER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")


def _member(parent: str, key: str) -> str:
    return f"{parent}.{key}" if _MEMBER.match(key) else f"{parent}[{json.dumps(key)}]"


def problems(schema: dict[str, Any], field: str) -> list[tuple[str, str]]:
    """(field, description) of each reference that is not followed inside
    `schema`, and of each loop of references that never descends into the input."""
    specification = referencing.jsonschema.specification_with(
        schema.get("$schema", ""), default=referencing.jsonschema.DRAFT202012
    )
    root = specification.create_resource(schema)
    registry = OFFLINE.with_resource(root.id() or "", root).crawl()
    subschemas, references = _walk(schema, field, registry.resolver(root.id() or ""), specification)
    found = [(ref.field, error) for source, ref in references if (error := _link(subschemas, source, ref))]
    found.extend(_loops(subschemas))
    return found


def _walk(
    schema: dict[str, Any], field: str, resolver: Resolver[Any], specification: Any
) -> tuple[dict[int, _Subschema], list[tuple[int, _Reference]]]:
    """Every object subschema (by id()) with its place, and every reference in
    them, both in the order they appear in the schema."""
    subschemas: dict[int, _Subschema] = {}
    references: list[tuple[int, _Reference]] = []
    stack: list[tuple[dict[str, Any], str, Resolver[Any]]] = [(schema, field, resolver)]
    while stack:
        contents, place, outer = stack.pop()
        if id(contents) in subschemas:
            continue
        here = _Subschema(place, outer.in_subresource(specification.create_resource(contents)))
        subschemas[id(contents)] = here
        for keyword, value in contents.items():
            if keyword in REFERENCE_KEYWORDS and isinstance(value, str):
                reference = _Reference(f"{place}.{keyword}", keyword, value, len(references))
                references.append((id(contents), reference))
        below = [child for keyword, value in contents.items() for child in _children(keyword, value, place)]
        for child, child_place, in_place in reversed(below):  # reversed: popped in order
            if isinstance(child, dict):
                stack.append((child, child_place, here.resolver))
                if in_place:
                    here.edges.append(_Edge(id(child)))
    return subschemas, references


def _children(keyword: str, value: Any, place: str) -> Iterator[tuple[Any, str, bool]]:
    """(subschema, its field, whether it applies to the same instance) under one keyword."""
    here = f"{place}.{keyword}"
    in_place = keyword in _IN_PLACE or keyword in _IN_PLACE_ARRAYS or keyword in _IN_PLACE_MAPS
    if isinstance(value, dict) and (keyword in _IN_PLACE or keyword in _PART or keyword in _UNAPPLIED):
        yield value, here, in_place
    elif isinstance(value, list) and (keyword in _IN_PLACE_ARRAYS or keyword in _PART_ARRAYS):
        for i, item in enumerate(value):
            yield item, f"{here}[{i}]", in_place
    elif isinstance(value, dict) and (keyword in _IN_PLACE_MAPS or keyword in _PART_MAPS or keyword in _UNAPPLIED_MAPS):
        for name, item in value.items():
            yield item, _member(here, name), in_place


def _link(subschemas: dict[int, _Subschema], source: int, reference: _Reference) -> str | None:
    """Resolve `reference` inside the schema and record it as an edge; or say why it cannot be."""
    try:
        target = subschemas[source].resolver.lookup(reference.value).contents
    except (
        referencing.exceptions.PointerToNowhere,
        referencing.exceptions.NoSuchAnchor,
        referencing.exceptions.InvalidAnchor,
    ):
        return f"{reference} points at nothing inside input_schema; check the pointer or anchor (e.g. '#/$defs/name')"
    except referencing.exceptions.Unresolvable:
        return (
            f"{reference} refers outside input_schema, and nothing outside it is ever fetched; "
            "put the schema it names under $defs and refer to it as '#/$defs/<name>'"
        )
    except Exception:  # a malformed URI or a pointer step that cannot apply
        return f"{reference} cannot be followed inside input_schema: it is not a URI reference or JSON pointer there"
    if isinstance(target, bool):
        return None
    if not isinstance(target, dict) or id(target) not in subschemas:
        return (
            f"{reference} points at something that is not a subschema; refer to a schema "
            "under $defs, properties, items or the like"
        )
    subschemas[source].edges.append(_Edge(id(target), reference))
    return None


def _loops(subschemas: dict[int, _Subschema]) -> Iterator[tuple[str, str]]:
    """(field, description) of loops among the in-place edges, each named at the
    reference of it that comes first in the schema."""
    reported: set[str] = set()
    for loop in _cycles(subschemas):
        # Children alone only lead down the document: every loop has a reference.
        references = [edge.reference for edge in loop if edge.reference is not None]
        start = min(range(len(references)), key=lambda i: references[i].order)
        first, *others = references[start:] + references[:start]
        if first.field in reported:
            continue
        reported.add(first.field)
        through = f" (through {', '.join(map(str, others))})" if others else ""
        yield (
            first.field,
            f"{first} leads back to this same schema{through} without descending into a part of the input, so "
            "validating would never end; a recursive reference belongs under properties, items or another "
            "keyword that applies to a part of the input (as for a tree's children)",
        )
        if len(reported) >= MAX_LOOPS_REPORTED:
            return


def _cycles(subschemas: dict[int, _Subschema]) -> Iterator[list[_Edge]]:
    """The edges of one cycle per back edge of a depth-first search (iterative:
    references can chain far deeper than the Python stack)."""
    done: set[int] = set()
    for start in subschemas:
        if start in done:
            continue
        position = {start: 0}  # on the current path: subschema -> index in `path`
        path: list[_Edge] = []
        stack = [iter(subschemas[start].edges)]
        while stack:
            edge = next(stack[-1], None)
            if edge is None:
                stack.pop()
                left = path.pop().target if path else start
                del position[left]
                done.add(left)
            elif edge.target in position:
                yield path[position[edge.target] :] + [edge]
            elif edge.target not in done:
                position[edge.target] = len(path) + 1
                path.append(edge)
                stack.append(iter(subschemas[edge.target].edges))
