"""A typed async Python client of a Hyperlocal deployment: the REST API and websocket sessions
(docs/web.md, "The Python client"; the contract is docs/protocol.md).

    async with aiohttp.ClientSession() as http:
        api = Api("http://127.0.0.1:8080", http)
        me = await api.signup("ada@example.test", "correct horse battery", "Ada")
        async with await api.connect(me) as ws:
            await ws.request("locate", {"lat": 52.52, "lng": 13.405})
            post = await ws.mutate("post.create", {"text": "hello"})
            event = await ws.next_event("post.created")

It is the same protocol the web app's js/client.js speaks, for tests, benchmarks and scripts.
"""

from hyperlocal_client.api import Api
from hyperlocal_client.types import ApiError, SignIn
from hyperlocal_client.ws import Socket

__all__ = ["Api", "ApiError", "SignIn", "Socket"]
