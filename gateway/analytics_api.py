"""Vendor analytics over REST: ``GET /api/v1/vendor/analytics`` and ``.../analytics/export``.

Thin adapters over services/analytics.py. The caller is a vendor (its user token, or an app
token with ``orders:read``) reading its own figures, or an admin naming ``vendor_id`` (app
tokens never act as admins); the service decides (models/analytics.py: ``target_vendor``).
The export is streamed: the response starts only once everything that can be refused has been
checked, then each chunk is written as the service produces it.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.http import parse_model
from gateway.oauth import require_vendor
from gateway.openapi_schema import errors, json_body, obj
from models.analytics import Viewer
from models.auth import bearer_token
from services.analytics import AnalyticsQuery

_Day = Annotated[str, StringConstraints(max_length=10)]
_Short = Annotated[str, StringConstraints(max_length=8)]


class _RangeParams(BaseModel):
    """A query string's range and vendor (the dates are checked by the service:
    models/analytics.py)."""

    model_config = ConfigDict(extra="forbid")
    from_: _Day | None = Field(None, alias="from")
    to: _Day | None = None
    vendor_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    def query(self, granularity: str | None = None) -> AnalyticsQuery:
        return AnalyticsQuery(self.from_, self.to, granularity, self.vendor_id)


class DashboardParams(_RangeParams):
    granularity: _Short | None = None


class ExportParams(_RangeParams):
    format: _Short | None = None


async def _viewer(request: web.Request) -> Viewer:
    header = request.headers.get("Authorization", "")
    services = request.app[SERVICES]
    if header and services.app_tokens.decode(bearer_token(header)) is not None:
        caller = await require_vendor(request, "orders:read")  # an app: its vendor, no roles
        return Viewer(caller.vendor_id)
    principal = await require_principal(request)
    return await services.analytics.viewer(principal.user_id, frozenset(principal.roles))


async def analytics_view(request: web.Request) -> web.Response:
    params = parse_model(DashboardParams, dict(request.query))
    services = request.app[SERVICES]
    answer = await services.analytics.dashboard(
        await _viewer(request), params.query(params.granularity)
    )
    return web.json_response(answer)


async def export_view(request: web.Request) -> web.StreamResponse:
    params = parse_model(ExportParams, dict(request.query))
    services = request.app[SERVICES]
    export = await services.analytics.export(await _viewer(request), params.query(), params.format)
    response = web.StreamResponse(
        headers={
            "Content-Type": export.content_type,
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in export.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/vendor/analytics", analytics_view)
    app.router.add_get("/api/v1/vendor/analytics/export", export_view)


# -- OpenAPI ------------------------------------------------------------------------------------
_INT = {"type": "integer"}
_STR = {"type": "string"}
_DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


def _q(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


_RANGE = [
    _q("from", _DATE, "first UTC day, included (default: 29 days before `to`)"),
    _q("to", _DATE, "last UTC day, included (default: today, UTC)"),
    _q("vendor_id", {"type": "string", "minLength": 1, "maxLength": 64},
       "admins only: whose figures (default: the caller's own)"),
]  # fmt: skip

OPENAPI_SCHEMAS: dict[str, Any] = {
    "VendorAnalytics": obj(
        ["vendor_id", "from", "to", "granularity", "timezone", "series", "funnel",
         "top_listings", "repeat_customer_rate", "hour_weekday"],
        vendor_id=_STR, **{"from": _DATE}, to=_DATE, granularity={"enum": ["day", "week"]},
        timezone={"const": "UTC"},
        as_of={"type": ["string", "null"],
               "description": "start of the rollup run the figures come from"},
        series={"type": "array", "items": obj(
            ["period", "currency", "orders", "revenue", "units", "aov"],
            period=_DATE, currency={"type": ["string", "null"]}, orders=_INT,
            revenue={"type": "integer", "description": "minor units, net of refunds"},
            units=_INT, aov={"type": "integer", "description": "average order value"})},
        funnel=obj(["views", "carts", "orders"], views=_INT, carts=_INT, orders=_INT),
        top_listings={"type": "array", "items": obj(
            ["listing_id", "currency", "orders", "units", "revenue"], listing_id=_STR,
            title={"type": ["string", "null"]}, currency=_STR, orders=_INT, units=_INT,
            revenue=_INT)},
        customers=_INT, repeat_customers=_INT,
        repeat_customer_rate={"type": "number", "minimum": 0, "maximum": 1},
        hour_weekday={"type": "array", "minItems": 7, "maxItems": 7, "description":
                      "orders by [weekday][hour], Monday first, UTC",
                      "items": {"type": "array", "minItems": 24, "maxItems": 24, "items": _INT}},
    ),
}  # fmt: skip

_AUTH = (
    "A vendor user's token or an app token with scope `orders:read`; admins may name `vendor_id`."
)

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/vendor/analytics": {
        "get": {
            "summary": "Sales analytics of the vendor from the rollups (docs/analytics.md)",
            "description": _AUTH,
            "security": [{"bearer": []}],
            "parameters": [*_RANGE, _q("granularity", {"enum": ["day", "week"]},
                                       "series periods: UTC days or ISO weeks (default day)")],
            "responses": {
                "200": {"description": "the figures",
                        **json_body({"$ref": "#/components/schemas/VendorAnalytics"})},
                **errors(400, 401, 403, 404, 429),
            },
        }
    },
    "/api/v1/vendor/analytics/export": {
        "get": {
            "summary": "The vendor's order lines of a range, streamed as CSV or Parquet",
            "description": _AUTH,
            "security": [{"bearer": []}],
            "parameters": [*_RANGE, {**_q("format", {"enum": ["csv", "parquet"]},
                                          "the file's format"), "required": True}],
            "responses": {
                "200": {"description": "the file (attachment)", "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.apache.parquet": {
                        "schema": {"type": "string", "format": "binary"}},
                }},
                **errors(400, 401, 403, 404, 429),
            },
        }
    },
}  # fmt: skip
