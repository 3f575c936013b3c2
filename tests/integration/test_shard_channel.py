"""The shards' direct channel (actors/channel.py, services/channel.py): only a gateway holding
this incarnation's secret is served, a broken peer is dropped alone, and the Ray path stays
available behind the same router interface (``HL_SHARD_TRANSPORT=ray``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import ray
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from models import shard_wire as wire
from models.errors import BadRequest
from services.channel import DirectTransport
from services.transport import RayTransport
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def _endpoint(settings: Settings, shard: str) -> dict[str, object]:
    handle = ray.get_actor(shard, namespace=settings.ray_namespace)
    return dict(await handle.endpoint.remote())


async def _hello(endpoint: dict[str, object], token: str) -> object:
    reader, writer = await asyncio.open_connection(
        str(endpoint["host"]), int(str(endpoint["port"]))
    )
    try:
        writer.write(wire.frame([0, "hello", token]))
        return await asyncio.wait_for(wire.read_frame(reader), 5)
    except asyncio.IncompleteReadError:
        return "closed"
    finally:
        writer.close()


async def test_only_the_holder_of_the_secret_is_served(settings: Settings, api: Api) -> None:
    shard = settings.shard_names()[0]
    endpoint = await _endpoint(settings, shard)
    assert endpoint["host"] == "127.0.0.1"
    assert await _hello(endpoint, "not-the-secret") == "closed"
    assert await _hello(endpoint, str(endpoint["token"])) == [0, True, shard, ["waited", "push"]]


async def test_a_gateway_sends_an_older_shard_only_what_it_understands(
    settings: Settings, api: Api
) -> None:
    """A shard's hello lists what it understands beyond the first channel (``waited``); to a
    shard that lists nothing (an older one) an execute goes without the extra argument."""
    shard = settings.shard_names()[0]
    transport = DirectTransport(RayTransport.connect(settings), 5.0)
    try:
        channel = transport._channel(shard)
        assert await transport.ping(shard) == shard and channel.features == {"waited", "push"}
        sent: list[list[object]] = []
        real = wire.frame

        def spy(value: object) -> bytes:
            if isinstance(value, list) and value[1:2] == ["execute"]:
                sent.append(value)
            return real(value)

        wire.frame = spy  # type: ignore[assignment]
        try:
            assert await transport.execute(shard, 1, [], 0.004) == []
            channel.features = frozenset()  # as an older shard's hello leaves it
            assert await transport.execute(shard, 1, [], 0.004) == []
        finally:
            wire.frame = real  # type: ignore[assignment]
        assert [len(frame) for frame in sent] == [5, 4]  # [id, "execute", version, cmds(, waited)]
    finally:
        await transport.close()


async def test_a_broken_peer_is_dropped_and_the_others_keep_being_served(
    settings: Settings, api: Api
) -> None:
    shard = settings.shard_names()[0]
    endpoint = await _endpoint(settings, shard)
    reader, writer = await asyncio.open_connection(
        str(endpoint["host"]), int(str(endpoint["port"]))
    )
    writer.write(wire.frame([0, "hello", endpoint["token"]]))
    assert (await wire.read_frame(reader))[1] is True
    writer.write(wire.HEADER.pack(4) + b"\xc1\xc1\xc1\xc1")  # not msgpack: the peer is broken
    with pytest.raises(asyncio.IncompleteReadError):
        await asyncio.wait_for(wire.read_frame(reader), 5)
    writer.close()
    transport = DirectTransport(RayTransport.connect(settings), 5.0)
    try:  # a fresh gateway connection is served as ever, typed refusals included
        assert await transport.ping(shard) == shard
        with pytest.raises(BadRequest):
            await transport._channel(shard).call("read", 1, ["no.such.read", {}])
    finally:
        await transport.close()


@pytest.fixture(scope="module")
async def ray_server(settings: Settings) -> AsyncIterator[TestServer]:
    over_ray = settings.model_copy(update={"shard_transport": "ray"})
    srv = TestServer(build_app(over_ray), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()


async def test_the_ray_path_serves_the_same_contract(
    ray_server: TestServer, http: ClientSession
) -> None:
    api = Api(str(ray_server.make_url("")), http)
    user = await api.signup("over-ray")
    ws = await api.connect(user)
    await ws.ok("locate", {"lat": 35.6762, "lng": 139.6503})  # Tokyo
    key = uuid.uuid4().hex
    first = await ws.ok("post.create", {"text": "over ray"}, key=key)
    again = await ws.ok("post.create", {"text": "over ray"}, key=key)
    assert again["post"]["id"] == first["post"]["id"]
    await ws.close()
