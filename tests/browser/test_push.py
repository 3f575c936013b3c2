"""Web Push in the browser: the opt-in of the notification centre subscribes with the
deployment's VAPID key and registers the subscription; a notification is then pushed, RFC 8291
encrypted, to the subscription's push service; and the service worker shows what the push
service delivers.

A browser's push service is its vendor's (FCM for Chromium), outside the deployment and
unreachable from a closed test box, so the test stands in for it at both of its ends:
``PushManager.subscribe`` answers the subscription of a push-service stand-in on loopback
(tests/integration/notify_kit.py, which checks VAPID and decrypts with the subscription's private
key), and what that stand-in received is handed to the service worker through the DevTools
protocol (``ServiceWorker.deliverPushMessage``), as the browser's push service would."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from hyperlocal_client import Api
from tests.browser.conftest import PASSWORD, Pages, sign_up, user_id
from tests.integration.notify_kit import PushService, eventually

pytestmark = pytest.mark.integration

STAND_IN = """
(() => {
  const sub = %s;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    const b64 = btoa(String.fromCharCode(...key));
    window.__push = {
      key: b64.replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, ""),
      userVisibleOnly: options.userVisibleOnly,
    };
    return { endpoint: sub.endpoint, toJSON: () => sub };
  };
})();
"""


async def _worker_registration(page: Page) -> tuple[Any, str]:
    """A DevTools session of the page and the id of its service worker's registration."""
    cdp = await page.context.new_cdp_session(page)
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def seen(event: dict[str, Any]) -> None:
        for reg in event["registrations"]:
            if not reg.get("isDeleted") and not found.done():
                found.set_result(reg["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    await cdp.send("ServiceWorker.enable")
    return cdp, await asyncio.wait_for(found, 10)


async def test_push_opt_in_subscribes_and_the_worker_shows_the_push(
    pages: Pages, client_api: Api, base_url: str
) -> None:
    service = PushService()
    await service.start()
    try:
        service.vapid_key = (await client_api.get("/api/v1/push/vapid-public-key"))["key"]
        device = service.device()
        page = await pages.open("/", init_script=STAND_IN % json.dumps(device.subscription()))
        await page.context.grant_permissions(["notifications"])
        await sign_up(page, "Pia")
        me = await user_id(page)
        await page.goto("/#/notifications")
        await page.get_by_role("heading", name="Notifications").wait_for()
        await page.get_by_role("button", name="Get push notifications on this device").click()
        await expect(page.get_by_role("alert")).to_have_text(
            "Push notifications are on for this device"
        )
        asked = await page.evaluate("window.__push")
        assert asked == {"key": service.vapid_key, "userVisibleOnly": True}

        # someone follows Pia: the notifier pushes it, encrypted, to her subscription
        fan = await client_api.signup(f"fan-{uuid.uuid4().hex[:8]}@example.test", PASSWORD, "Quin")
        async with await client_api.connect(fan) as ws:
            await ws.mutate("user.follow", {"user_id": me})
        await eventually(lambda: _received(device.received))
        message = device.received[0]
        assert message["kind"] == "user.followed" and "Quin" in message["body"], message
        assert not service.rejected

        # the push service delivers it to the browser: the service worker shows it
        cdp, registration = await _worker_registration(page)
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": base_url,
                "registrationId": registration,
                "data": json.dumps(message),
            },
        )
        shown = await eventually(lambda: _notifications(page, message["body"]))
        assert shown == [["Hyperlocal", message["url"]]]
    finally:
        await service.close()


async def _received(items: list[dict[str, Any]]) -> bool:
    return bool(items)


async def _notifications(page: Page, body: str) -> list[list[str]]:
    """The notifications the service worker shows with this body: [title, the link it opens]."""
    found = await page.evaluate(
        """(body) => navigator.serviceWorker.ready
             .then((r) => r.getNotifications())
             .then((ns) => ns.filter((n) => n.body === body).map((n) => [n.title, n.data.url]))""",
        body,
    )
    return list(found)
