-- Chat: rooms homed in a cell, their members and messages. A room's durable event stream is
-- `room:<id>` in stream_events; a message's offset is its event's offset in that stream.
-- Neighbourhood rooms (`cell-<h3>`) have no rows here: anyone located within k of the cell
-- may use them (checked by the gateway).

CREATE TABLE rooms (
    id         text PRIMARY KEY,                 -- <cell>.<id>: routed to the cell's owner
    kind       text NOT NULL CHECK (kind IN ('direct', 'group')),
    cell       text NOT NULL,                    -- the room's home cell; never changes
    title      text,
    pair_key   text UNIQUE,                      -- direct rooms: "<user a>|<user b>", sorted
    created_by text NOT NULL REFERENCES users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'direct') = (pair_key IS NOT NULL))
);

CREATE TABLE room_members (
    room_id     text NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    read_offset bigint NOT NULL DEFAULT 0,       -- the member's read position in room:<id>
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE TABLE messages (
    id         text PRIMARY KEY,
    room_id    text NOT NULL,                    -- a rooms.id or a neighbourhood room cell-<h3>
    cell       text NOT NULL,
    sender_id  text NOT NULL REFERENCES users(id),
    text       text NOT NULL,
    "offset"   bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (room_id, "offset")
);
