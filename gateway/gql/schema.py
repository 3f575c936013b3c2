"""The GraphQL read API's schema: types over the same services and rules as the websocket ops.

Root fields call the services (services/social.py, feed.py, market.py) as the signed-in caller,
so access is what it is everywhere else: profiles, visible posts, neighbourhood feeds and
listings on sale are public to any signed-in user; ``orders`` are only the caller's own.
Nested objects (a post's author, a listing's vendor, a post's first comments) come from the
request's batched loaders (loaders.py). Field names are camelCase (GraphQL's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from gateway.gql.loaders import Loaders
from models.errors import BadRequest
from services.analytics import AnalyticsQuery
from services.caller import Caller
from services.container import Services
from store import social_store

Row = dict[str, Any]


@dataclass
class Context:
    """What every resolver of one request sees."""

    services: Services
    caller: Caller
    loaders: Loaders


Ctx = Info[Context, None]


def _page_size(value: int, most: int = 100) -> int:
    if not 1 <= value <= most:
        raise BadRequest(f"first/limit: 1 to {most}")
    return value


@strawberry.type(description="A user's public profile.")
class User:
    id: strawberry.ID
    display_name: str
    bio: str
    avatar: str | None = strawberry.field(description="A media id (docs/media.md), or null.")
    followers: int
    following: int
    posts: int
    joined_at: str
    vendor_id: strawberry.Private[str | None]

    @strawberry.field
    async def vendor(self, info: Ctx) -> Vendor | None:
        if self.vendor_id is None:
            return None
        return Vendor.of(await info.context.loaders.vendors.load(self.vendor_id))

    @classmethod
    def of(cls, row: Row | None) -> User | None:
        if row is None:
            return None
        vendor = row.get("vendor")
        return cls(
            id=strawberry.ID(row["id"]), display_name=row["display_name"], bio=row["bio"],
            avatar=row["avatar"], followers=row["followers"], following=row["following"],
            posts=row["posts"], joined_at=row["joined_at"],
            vendor_id=vendor["id"] if vendor else None,
        )  # fmt: skip


@strawberry.type(description="A vendor: who sells, and the user to chat with.")
class Vendor:
    id: strawberry.ID
    name: str
    user_id: strawberry.ID

    @strawberry.field
    async def user(self, info: Ctx) -> User | None:
        return User.of(await info.context.loaders.users.load(str(self.user_id)))

    @classmethod
    def of(cls, row: Row | None) -> Vendor | None:
        if row is None:
            return None
        return cls(
            id=strawberry.ID(row["id"]), name=row["name"], user_id=strawberry.ID(row["user_id"])
        )


@strawberry.type
class Comment:
    id: strawberry.ID
    text: str
    created_at: str
    author_id: strawberry.ID

    @strawberry.field
    async def author(self, info: Ctx) -> User | None:
        return User.of(await info.context.loaders.users.load(str(self.author_id)))

    @classmethod
    def of(cls, row: Row) -> Comment:
        return cls(
            id=strawberry.ID(row["id"]), text=row["text"], created_at=row["created_at"],
            author_id=strawberry.ID(row["author_id"]),
        )  # fmt: skip


@strawberry.type
class CommentPage:
    items: list[Comment]
    next_cursor: str | None


@strawberry.type(description="A repost's original.")
class SharedFrom:
    post_id: strawberry.ID
    author_id: strawberry.ID
    cell: str


@strawberry.type
class Post:
    id: strawberry.ID
    cell: str
    text: str
    media: list[str]
    like_count: int
    comment_count: int
    created_at: str
    author_id: strawberry.ID
    shared_from: SharedFrom | None

    @strawberry.field
    async def author(self, info: Ctx) -> User | None:
        return User.of(await info.context.loaders.users.load(str(self.author_id)))

    @strawberry.field(description="Oldest first; ``after`` pages on (not batched).")
    async def comments(self, info: Ctx, first: int = 10, after: str | None = None) -> CommentPage:
        size = _page_size(first)
        if after is None:
            items, cursor = await info.context.loaders.comments.load((str(self.id), size))
        else:
            page = await info.context.services.social.post_page(str(self.id), after, size)
            items, cursor = page["comments"], page["next_cursor"]
        return CommentPage(items=[Comment.of(c) for c in items], next_cursor=cursor)

    @classmethod
    def of(cls, row: Row) -> Post:
        shared = row.get("shared_from")
        return cls(
            id=strawberry.ID(row["id"]), cell=row["cell"], text=row["text"],
            media=[str(m) for m in row["media"]], like_count=row["like_count"],
            comment_count=row["comment_count"], created_at=row["created_at"],
            author_id=strawberry.ID(row["author_id"]),
            shared_from=SharedFrom(
                post_id=strawberry.ID(shared["post_id"]),
                author_id=strawberry.ID(shared["author_id"]), cell=shared["cell"],
            ) if shared else None,
        )  # fmt: skip


@strawberry.type
class FeedPage:
    items: list[Post]
    next_cursor: str | None
    sort: str


@strawberry.type
class Listing:
    id: strawberry.ID
    kind: str
    title: str
    description: str
    category: str
    price: int
    currency: str
    stock: int
    images: list[str]
    cell: str
    lat: float
    lng: float
    distance_m: float | None
    vendor_id: strawberry.ID

    @strawberry.field
    async def vendor(self, info: Ctx) -> Vendor | None:
        return Vendor.of(await info.context.loaders.vendors.load(str(self.vendor_id)))

    @classmethod
    def of(cls, row: Row) -> Listing:
        return cls(
            id=strawberry.ID(row["id"]), kind=row["kind"], title=row["title"],
            description=row["description"], category=row["category"], price=row["price"],
            currency=row["currency"], stock=row["stock"], images=[str(i) for i in row["images"]],
            cell=row["cell"], lat=row["lat"], lng=row["lng"], distance_m=row.get("distance_m"),
            vendor_id=strawberry.ID(row["vendor_id"]),
        )  # fmt: skip


@strawberry.type
class ListingPage:
    items: list[Listing]
    next_cursor: str | None
    sort: str


@strawberry.type
class OrderLine:
    listing_id: strawberry.ID
    title: str | None
    qty: int
    unit_price: int


@strawberry.type
class Order:
    id: strawberry.ID
    status: str
    total: int
    currency: str
    created_at: str | None
    items: list[OrderLine]
    vendor_id: strawberry.ID
    room_id: str | None = strawberry.field(description="The buyer–vendor chat room.")

    @strawberry.field
    async def vendor(self, info: Ctx) -> Vendor | None:
        return Vendor.of(await info.context.loaders.vendors.load(str(self.vendor_id)))

    @classmethod
    def of(cls, row: Row) -> Order:
        lines = [
            OrderLine(
                listing_id=strawberry.ID(x["listing_id"]),
                title=x.get("title"),
                qty=x["qty"],
                unit_price=x["unit_price"],
            )
            for x in row["items"]
        ]
        return cls(
            id=strawberry.ID(row["id"]), status=row["status"], total=row["total"],
            currency=row["currency"], created_at=row.get("created_at"), items=lines,
            vendor_id=strawberry.ID(row["vendor_id"]), room_id=row.get("room_id"),
        )  # fmt: skip


@strawberry.type
class OrderPage:
    items: list[Order]
    next_cursor: str | None


@strawberry.type(description="One period of a vendor's sales (minor units; UTC).")
class SalesPeriod:
    period: str
    currency: str | None
    orders: int
    revenue: int
    units: int
    aov: int


@strawberry.type
class Funnel:
    views: int
    carts: int
    orders: int


@strawberry.type
class TopListing:
    listing_id: strawberry.ID
    title: str | None
    currency: str
    orders: int
    units: int
    revenue: int


@strawberry.type(description="As GET /api/v1/vendor/analytics (docs/analytics.md).")
class VendorAnalytics:
    vendor_id: strawberry.ID
    from_: str = strawberry.field(name="from")
    to: str
    granularity: str
    timezone: str
    as_of: str | None
    series: list[SalesPeriod]
    funnel: Funnel
    top_listings: list[TopListing]
    customers: int
    repeat_customers: int
    repeat_customer_rate: float
    hour_weekday: list[list[int]] = strawberry.field(
        description="Orders by [weekday][hour], Monday first, UTC."
    )

    @classmethod
    def of(cls, a: Row) -> VendorAnalytics:
        return cls(
            vendor_id=strawberry.ID(a["vendor_id"]), from_=a["from"], to=a["to"],
            granularity=a["granularity"], timezone=a["timezone"], as_of=a["as_of"],
            series=[SalesPeriod(**p) for p in a["series"]], funnel=Funnel(**a["funnel"]),
            top_listings=[
                TopListing(**{**t, "listing_id": strawberry.ID(t["listing_id"])})
                for t in a["top_listings"]
            ],
            customers=a["customers"], repeat_customers=a["repeat_customers"],
            repeat_customer_rate=a["repeat_customer_rate"], hour_weekday=a["hour_weekday"],
        )  # fmt: skip


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user's profile.")
    async def me(self, info: Ctx) -> User | None:
        return User.of(await info.context.loaders.users.load(info.context.caller.user_id))

    @strawberry.field
    async def user(self, info: Ctx, id: strawberry.ID) -> User | None:
        return User.of(await info.context.loaders.users.load(str(id)))

    @strawberry.field(description="A visible post (null: none, or removed).")
    async def post(self, info: Ctx, id: strawberry.ID) -> Post | None:
        found = (await _posts(info, [str(id)])).get(str(id))
        return Post.of(found) if found else None

    @strawberry.field(description="As feed.get: the neighbourhood of lat, lng, or following.")
    async def feed(
        self, info: Ctx, lat: float | None = None, lng: float | None = None,
        cursor: str | None = None, limit: int = 20, sort: str | None = None,
    ) -> FeedPage:  # fmt: skip
        if sort not in (None, "relevance", "newest", "following"):
            raise BadRequest("sort: relevance, newest or following")
        page = await info.context.services.feed.feed(
            info.context.caller, lat, lng, cursor, _page_size(limit), sort
        )
        return FeedPage(
            items=[Post.of(p) for p in page["items"]], next_cursor=page["next_cursor"],
            sort=page["sort"],
        )  # fmt: skip

    @strawberry.field(description="As listings.nearby.")
    async def listings_nearby(
        self, info: Ctx, lat: float, lng: float, q: str | None = None,
        category: str | None = None, max_price: int | None = None, sort: str | None = None,
        cursor: str | None = None, limit: int = 20,
    ) -> ListingPage:  # fmt: skip
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise BadRequest("lat, lng: not a point on Earth")
        if sort not in (None, "relevance", "distance", "newest", "price"):
            raise BadRequest("sort: relevance, distance, newest or price")
        filters = {"category": category, "q": q or None, "max_price": max_price}
        page = await info.context.services.market.nearby(
            info.context.caller.user_id, lat, lng, filters, sort, cursor, _page_size(limit)
        )
        for item in page["items"]:  # the page carries its vendors: no second query
            if "vendor" in item:
                info.context.loaders.vendors.prime(item["vendor"]["id"], item["vendor"])
        return ListingPage(
            items=[Listing.of(x) for x in page["items"]], next_cursor=page["next_cursor"],
            sort=page["sort"],
        )  # fmt: skip

    @strawberry.field(description="The caller's own orders, newest first.")
    async def orders(
        self, info: Ctx, status: str | None = None, cursor: str | None = None, limit: int = 20
    ) -> OrderPage:
        page = await info.context.services.market.orders(
            "buyer_id", info.context.caller.user_id, status, cursor, _page_size(limit)
        )
        items = [Order.of(o) for o in page["items"]]
        return OrderPage(items=items, next_cursor=page["next_cursor"])

    @strawberry.field(
        description="The caller's vendor's sales analytics (an admin may name vendorId)."
    )
    async def vendor_analytics(
        self, info: Ctx,
        from_: Annotated[str | None, strawberry.argument(name="from")] = None,
        to: str | None = None, granularity: str | None = None,
        vendor_id: strawberry.ID | None = None,
    ) -> VendorAnalytics:  # fmt: skip
        analytics = info.context.services.analytics
        user_id = info.context.caller.user_id
        viewer = await analytics.viewer(user_id, await analytics.roles(user_id))
        query = AnalyticsQuery(from_, to, granularity, str(vendor_id) if vendor_id else None)
        return VendorAnalytics.of(await analytics.dashboard(viewer, query))


async def _posts(info: Ctx, ids: list[str]) -> dict[str, Row]:
    return await social_store.posts(info.context.loaders.db, ids)
