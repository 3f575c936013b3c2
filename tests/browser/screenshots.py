"""``make screenshots``: the web app's main screens as PNGs (docs/screenshots/, docs/web.md).

Starts a private deployment (embedded Postgres, Redis, a local Ray: all stopped at the end, its
data in a temporary folder), seeds one neighbourhood with the Python client (a shop with
listings, two neighbours, posts, chat, an order), and photographs each screen in headless
Chromium at a phone's size.

    python -m tests.browser.screenshots docs/screenshots
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import h3
from aiohttp import ClientSession, web
from playwright.async_api import Page, async_playwright

from cluster.config import Settings, load_settings
from cluster.runtime import Runtime
from gateway.app import build_app
from hyperlocal_client import Api
from services.analytics import run_rollup
from tests.browser.conftest import CHROMIUM_ARGS, PASSWORD, sign_in
from tests.integration.admin_kit import operator

LAT, LNG = 52.5208, 13.4094
PHONE = {"width": 390, "height": 844}


async def seed(api: Api) -> dict[str, str]:
    """A neighbourhood worth looking at; the emails of the people the screens are of."""
    baker = await api.signup("baker@example.test", PASSWORD, "Mia (Corner Bakery)")
    await api.become_vendor(baker, "Corner Bakery", "bakery", LAT, LNG)
    for title, price, stock in [("Sourdough loaf", 450, 12), ("Cinnamon buns (4)", 600, 5)]:
        await api.create_listing(
            baker,
            title=title,
            category="bakery",
            price=price,
            stock=stock,
            description="Baked this morning",
        )
    fixer = await api.signup("fixer@example.test", PASSWORD, "Tom's Bikes")
    await api.become_vendor(fixer, "Tom's Bikes", "repairs", LAT + 0.002, LNG - 0.003)
    await api.create_listing(
        fixer, title="Puncture repair", category="repairs", price=900, stock=8, kind="service"
    )
    ada = await api.signup("ada@example.test", PASSWORD, "Ada")
    bob = await api.signup("bob@example.test", PASSWORD, "Bob")
    async with await api.connect(bob) as ws:
        await ws.request("locate", {"lat": LAT + 0.001, "lng": LNG + 0.001})
        await ws.mutate("post.create", {"text": "Lost a grey cat near the park, answers to Mo."})
        await ws.mutate(
            "chat.send",
            {"room_id": _room(ws), "text": "Anyone up for a street clean-up on Saturday?"},
        )
    async with await api.connect(ada) as ws:
        await ws.request("locate", {"lat": LAT, "lng": LNG})
        post = await ws.mutate(
            "post.create", {"text": "Fresh sourdough at the corner bakery this morning!"}
        )
        await ws.mutate("post.like", {"post_id": post["post"]["id"]})
        await ws.mutate(
            "chat.send", {"room_id": _room(ws), "text": "Count me in, I'll bring bags."}
        )
        nearby = await ws.request("listings.nearby", {"lat": LAT, "lng": LNG})
        loaf = next(i for i in nearby["items"] if i["title"] == "Sourdough loaf")
        await ws.mutate("cart.add", {"listing_id": loaf["id"], "qty": 2})
        await ws.mutate(
            "checkout", {"payment": {"provider": "sandbox", "card": "4242424242424242"}}
        )
        buns = next(i for i in nearby["items"] if i["title"].startswith("Cinnamon"))
        await ws.mutate("cart.add", {"listing_id": buns["id"], "qty": 1})
    return {"buyer": ada.email, "vendor": baker.email}


def _room(ws: object = None) -> str:
    """The neighbourhood room of the seeded cell (docs/protocol.md, Chat)."""
    return f"cell-{h3.latlng_to_cell(LAT, LNG, 8)}"


async def shoot(
    page: Page, out: Path, name: str, route: str, ready: str, full: bool = False
) -> None:
    await page.set_viewport_size({"width": PHONE["width"], "height": 1200 if full else 844})
    await page.goto(route)
    await page.get_by_role("heading", name=ready).first.wait_for()
    await page.wait_for_timeout(400)
    await page.screenshot(path=str(out / f"{name}.png"))
    print(f"  {out / (name + '.png')}")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="hl-shots-"))
    runtime = Runtime(
        load_settings(
            data_dir=root,
            port=0,
            shard_count=1,
            shard_num_cpus=0.1,
            ray_num_cpus=2,
            sandbox_payments=True,
            argon2_time_cost=1,
            argon2_memory_kib=8192,
        )
    )
    try:
        settings = runtime.start()
        asyncio.run(serve_and_shoot(settings, out))
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)


async def serve_and_shoot(settings: Settings, out: Path) -> None:
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with ClientSession() as http:
            who = await seed(Api(base, http))
        await photograph(settings, base, who, out)
    finally:
        await runner.cleanup()


async def photograph(settings: Settings, base: str, who: dict[str, str], out: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context(base_url=base, viewport=PHONE)
        page = await context.new_page()
        await page.goto("/")
        await page.get_by_role("heading", name="Sign in").wait_for()
        await page.screenshot(path=str(out / "signin.png"))
        await sign_in(page, who["buyer"])
        await page.evaluate(
            f"localStorage.setItem('hl.location', JSON.stringify({{lat: {LAT}, lng: {LNG}}}))"
        )
        await page.reload()
        await shoot(page, out, "feed", "/#/feed", "Your neighbourhood", full=True)
        await shoot(page, out, "chat", f"/#/chat/{_room()}", "Neighbourhood room")
        await shoot(page, out, "market", "/#/market", "Market")
        await shoot(page, out, "cart", "/#/cart", "Your cart")
        await shoot(page, out, "orders", "/#/orders", "Your orders")
        await shoot(page, out, "notifications", "/#/notifications", "Notifications")
        for role in ("admin", "ops"):
            await operator(settings, "users.grant", {"email": who["buyer"], "role": role})
        await page.get_by_role("link", name="Admin").wait_for()
        await shoot(page, out, "admin", "/#/admin", "Cluster", full=True)
        revenue = page.get_by_role("region", name="Revenue")
        await revenue.get_by_role("img").wait_for()
        await revenue.screenshot(path=str(out / "admin-revenue.png"))
        vendor = await browser.new_context(base_url=base, viewport=PHONE)
        shop = await vendor.new_page()
        await shop.goto("/")
        await sign_in(shop, who["vendor"])
        await run_rollup(str(settings.database_url), 0.0)  # the analytics of the seeded order
        await shoot(shop, out, "vendor", "/#/vendor", "Your shop: Corner Bakery")
        sales = shop.get_by_role("region", name="Sales")
        await sales.get_by_role("img", name="orders by weekday and hour").wait_for()
        await sales.screenshot(path=str(out / "vendor-sales.png"))
        await browser.close()


if __name__ == "__main__":
    if shutil.which("chromium") is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
