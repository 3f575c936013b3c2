"""Running one GraphQL request: parse, validate, measure, then execute with fresh loaders.

Two kinds of failure, told apart for the client:
- **the request** cannot run (not GraphQL, fails validation against the schema, not a query,
  too deep, too costly, too long, bad variables): an ``AppError`` (``bad_request`` or
  ``too_large``) before any resolver runs, answered by the REST error mapping with its 4xx;
- **a field** fails while running (``not_found``, ``forbidden``, a bad cursor, ...): HTTP 200
  with ``data`` (what could be resolved) and ``errors[]``, each with ``extensions.code`` from
  the same taxonomy. An error that is not an ``AppError`` is logged and shown only as
  ``unavailable``: no stack trace or internal message reaches a client.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError, OperationType, parse, validate
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType as StrawberryOperation

from gateway.gql import limits
from gateway.gql.loaders import Loaders
from gateway.gql.schema import Context, Query
from models.errors import AppError, BadRequest, TooLarge
from services.caller import Caller
from services.container import Services
from store.db import Db

log = logging.getLogger("hyperlocal.graphql")


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log what is not a typed error (a bug or an outage); typed ones are answers."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, AppError):
                log.error("graphql resolver failed at %s", error.path, exc_info=original)


SCHEMA = _Schema(query=Query)
PAGED = limits.page_defaults(SCHEMA._schema)
"""Each paged field's default page size: what an unsized list costs (limits.py)."""


def schema_sdl() -> str:
    """The schema in SDL, as docs/graphql.md prints it (a test keeps the two in step)."""
    return SCHEMA.as_str()


class GraphQLBody(BaseModel):
    """A GraphQL-over-HTTP request body (``extensions`` accepted and ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: Annotated[str, StringConstraints(min_length=1)]
    variables: dict[str, Any] | None = None
    operation_name: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        None, alias="operationName"
    )
    extensions: dict[str, Any] | None = None


def _prepare(services: Services, body: GraphQLBody) -> None:
    """Refuse a request that cannot run, before anything runs."""
    settings = services.settings
    if len(body.query) > settings.graphql_max_query_chars:
        raise TooLarge(f"query is longer than {settings.graphql_max_query_chars} characters")
    try:
        document = parse(body.query, max_tokens=settings.graphql_max_cost * 10)
    except GraphQLError as err:
        raise BadRequest(f"not a GraphQL query: {err.message}") from None
    invalid = validate(SCHEMA._schema, document)
    if invalid:
        raise BadRequest("; ".join(e.message for e in invalid[:5]))
    op = limits.operation(document, body.operation_name)
    if op.operation != OperationType.QUERY:
        raise BadRequest("a read API: only queries (no mutations or subscriptions)")
    limits.check(
        document, body.operation_name, body.variables or {},
        settings.graphql_max_depth, settings.graphql_max_cost, PAGED,
    )  # fmt: skip


def _error(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    if isinstance(original, AppError):
        extensions: dict[str, Any] = {"code": original.code}
        if original.details:
            extensions["details"] = original.details
        message = original.message
    elif original is None:
        extensions, message = {"code": "bad_request"}, error.message
    else:
        extensions, message = {"code": "unavailable"}, "internal error, try again"
    out: dict[str, Any] = {"message": message, "extensions": extensions}
    if error.path:
        out["path"] = list(error.path)
    return out


async def execute(
    services: Services, caller: Caller, body: GraphQLBody, db: Db | None = None
) -> dict[str, Any]:
    """The response body of one request; raises ``AppError`` for a request that cannot run.
    ``db`` is what the loaders read through (default: the services' pool)."""
    _prepare(services, body)
    context = Context(services, caller, Loaders(db if db is not None else services.db))
    result = await SCHEMA.execute(
        body.query,
        variable_values=body.variables,
        context_value=context,
        operation_name=body.operation_name,
        allowed_operation_types=(StrawberryOperation.QUERY,),
    )
    errors = [_error(e) for e in result.errors or ()]
    if result.data is None and errors and all(e.get("path") is None for e in errors):
        raise BadRequest("; ".join(e["message"] for e in errors[:5]))  # e.g. bad variables
    out: dict[str, Any] = {"data": result.data}
    if errors:
        out["errors"] = errors
    return out
