-- Recommendation: interaction events and versioned ranking models.
--
-- `interactions` holds events the product records explicitly (views, purchases, check-ins, and
-- any like/comment a feature chooses to record). Likes and comments on posts are also read
-- straight from `likes` / `comments` by the trainer (store/recommend_store.py), so nothing is
-- written twice. Every row carries its item's H3 `cell` (rule: every geo row carries its cell).

CREATE TABLE interactions (
    id         bigserial PRIMARY KEY,
    user_id    text NOT NULL,
    item_kind  text NOT NULL CHECK (item_kind IN ('post', 'listing', 'place')),
    item_id    text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('view', 'like', 'comment', 'purchase', 'checkin')),
    cell       text NOT NULL,                    -- the item's H3 cell
    lat        double precision,
    lng        double precision,
    category   text,                             -- listing/place category; a post's author
    price      double precision CHECK (price IS NULL OR price >= 0),   -- listings, major units
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX interactions_cell_time ON interactions (cell, created_at DESC);
CREATE INDEX interactions_user_time ON interactions (user_id, created_at DESC);

-- Trained rankers. scope: 'global' or an H3 cell id (a cell at the deployment resolution or a
-- parent of it). A cell serves the newest version of the first scope that has one among: the
-- cell, its parents, global. Versions come from one sequence: newer is larger, across scopes.
CREATE SEQUENCE models_version_seq;

CREATE TABLE models (
    scope      text NOT NULL,
    version    bigint NOT NULL DEFAULT nextval('models_version_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    metrics    jsonb NOT NULL DEFAULT '{}',
    blob       bytea NOT NULL,                   -- models/recommend/serving.py ModelBundle
    PRIMARY KEY (scope, version)
);
CREATE INDEX models_newest ON models (scope, version DESC);
