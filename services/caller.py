"""Who is asking: the identity, idempotency key and location a service call runs under."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import BadRequest
from models.risk import Point


@dataclass(frozen=True, slots=True)
class Location:
    """Where a caller said they are (``locate``), and the cell that puts them in; when
    (epoch seconds) and where they were located before (the fraud rules' travel check)."""

    lat: float
    lng: float
    cell: str
    at: float = 0.0
    before: Point | None = None

    def point(self) -> Point:
        return Point(self.lat, self.lng, self.at)


@dataclass(frozen=True, slots=True)
class Client:
    """Where a socket comes from: its client address and the app's device id digest."""

    address: str | None
    device: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """One request's caller. ``key`` is the client's idempotency key (mutations need one);
    ``location`` is the session's last ``locate`` (None for REST callers and before it)."""

    user_id: str
    key: str | None = None
    location: Location | None = None

    def idempotency_key(self) -> str:
        if self.key is None:
            raise BadRequest("this operation mutates: it needs an idempotency key")
        return self.key

    def where(self, lat: float | None, lng: float | None) -> tuple[float, float]:
        """The point a request is about: the one given, else the caller's location."""
        if lat is not None and lng is not None:
            return lat, lng
        if lat is not None or lng is not None:
            raise BadRequest("give both lat and lng, or neither")
        if self.location is None:
            raise BadRequest("no location: send locate first or give lat and lng")
        return self.location.lat, self.location.lng
