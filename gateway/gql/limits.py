"""Depth and cost of a GraphQL query, measured on its document before anything runs.

- **depth**: the deepest nesting of field selections (fragments inlined); introspection
  (``__schema``, ``__type``, ``__typename``) is not counted, so tools can read the schema.
- **cost**: every field costs 1; a field taking a page size (``first`` or ``limit``) multiplies
  what is under it by that size (the literal, a variable's value, else the argument's default
  in the schema: ``page_defaults``). 100 posts with 100 comments each cost about 10,000.
Refused with ``bad_request`` naming the limit (``details: {limit, max, got}``). Pure: the
graphql-core AST in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from models.errors import BadRequest

PAGE_ARGS = ("first", "limit")
DEFAULT_PAGE = 20
"""The page size assumed for a list field whose size is not given (the API's defaults are
at most this)."""


@dataclass(frozen=True)
class Measure:
    depth: int
    cost: int


class _Walker:
    def __init__(
        self, document: DocumentNode, variables: dict[str, Any], paged: dict[str, int]
    ) -> None:
        self.variables = variables
        self.paged = paged
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def page_size(self, node: FieldNode) -> int:
        for arg in node.arguments or ():
            if arg.name.value not in PAGE_ARGS:
                continue
            value = arg.value
            if isinstance(value, IntValueNode):
                return max(1, int(value.value))
            if isinstance(value, VariableNode):
                given = self.variables.get(value.name.value)
                if isinstance(given, int) and not isinstance(given, bool):
                    return max(1, given)
            return DEFAULT_PAGE
        return self.paged.get(node.name.value, 1)

    def measure(self, selections: SelectionSetNode | None, seen: frozenset[str]) -> Measure:
        """(depth, cost) of a selection set; ``seen`` guards fragment cycles (validation
        refuses them first, this only keeps the walk finite on any input)."""
        if selections is None:
            return Measure(0, 0)
        depth = cost = 0
        for sel in selections.selections:
            if isinstance(sel, FieldNode):
                if sel.name.value.startswith("__"):
                    continue
                inner = self.measure(sel.selection_set, seen)
                depth = max(depth, 1 + inner.depth)
                cost += 1 + self.page_size(sel) * inner.cost
            elif isinstance(sel, InlineFragmentNode):
                inner = self.measure(sel.selection_set, seen)
                depth, cost = max(depth, inner.depth), cost + inner.cost
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                inner = self.measure(fragment.selection_set, seen | {name})
                depth, cost = max(depth, inner.depth), cost + inner.cost
        return Measure(depth, cost)


def operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    """The operation a request runs (by name when the document holds several)."""
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        ops = [o for o in ops if o.name is not None and o.name.value == name]
    if len(ops) != 1:
        raise BadRequest("name the one operation to run (operationName)")
    return ops[0]


def measure(
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any],
    paged: dict[str, int] | None = None,
) -> Measure:
    op = operation(document, operation_name)
    return _Walker(document, variables, paged or {}).measure(op.selection_set, frozenset())


def check(
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any],
    max_depth: int,
    max_cost: int,
    paged: dict[str, int] | None = None,
) -> Measure:
    """The query's measure, or ``bad_request`` if it is too deep or too costly."""
    got = measure(document, operation_name, variables, paged)
    if got.depth > max_depth:
        raise BadRequest(
            f"query is {got.depth} levels deep; at most {max_depth}",
            limit="depth", max=max_depth, got=got.depth,
        )  # fmt: skip
    if got.cost > max_cost:
        raise BadRequest(
            f"query costs {got.cost}; at most {max_cost} (lower first/limit or fields)",
            limit="cost", max=max_cost, got=got.cost,
        )  # fmt: skip
    return got


def page_defaults(schema: GraphQLSchema) -> dict[str, int]:
    """Field name -> the default page size of every field that takes ``first`` or ``limit``
    (the largest where two types share a name): what an unsized list costs."""
    out: dict[str, int] = {}
    for named in schema.type_map.values():
        if named.name.startswith("__") or not isinstance(named, GraphQLObjectType):
            continue
        for name, field in named.fields.items():
            for arg_name, arg in field.args.items():
                if arg_name in PAGE_ARGS:
                    default = arg.default_value
                    size = default if isinstance(default, int) else DEFAULT_PAGE
                    out[name] = max(out.get(name, 1), size)
    return out
