"""The application layer: what every transport calls.

Websocket ops, REST handlers, and later the admin control actor, the CLI and GraphQL, are thin
adapters over these services; nothing here imports aiohttp's server side or knows a socket.
``container.Services`` is built once per process (``open_services``) and holds one of each.
"""
