"""The web client (docs/web.md): ES modules, styles, icons, the manifest and the service worker
that the gateway serves (gateway/webapp.py). No build step: the files here are what runs."""

from pathlib import Path

ROOT = Path(__file__).parent
