"""``POST /api/v1/graphql``: the GraphQL read API at the edge (Bearer, JSON body). The schema,
limits and loaders are gateway/gql/; the data comes from the same services as every op."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.gql.run import GraphQLBody, execute
from gateway.http import read_json
from gateway.openapi_schema import errors, json_body, obj
from services.caller import Caller


async def graphql_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, GraphQLBody)
    services = request.app[SERVICES]
    return web.json_response(await execute(services, Caller(principal.user_id), body))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/graphql", graphql_view)


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/graphql": {
        "post": {
            "summary": "GraphQL read API (schema and limits in docs/graphql.md)",
            "description": "A query that cannot run (syntax, schema validation, not a query, "
            "too deep, too costly, bad variables) is a 400 bad_request or 413 too_large; a field "
            "that fails while running is reported in errors[] with extensions.code, next to "
            "the data that could be resolved.",
            "security": [{"bearer": []}],
            "requestBody": json_body(
                {
                    **obj(
                        ["query"],
                        query={"type": "string", "minLength": 1},
                        variables={"type": ["object", "null"]},
                        operationName={"type": ["string", "null"], "maxLength": 128},
                        extensions={"type": ["object", "null"]},
                    ),
                }
            ),
            "responses": {
                "200": {
                    "description": "the result",
                    **json_body(
                        {
                            "type": "object",
                            "properties": {
                                "data": {"type": ["object", "null"]},
                                "errors": {"type": "array", "items": {"type": "object"}},
                            },
                        }
                    ),
                },
                **errors(400, 401, 413, 429),
            },
        }
    }
}
