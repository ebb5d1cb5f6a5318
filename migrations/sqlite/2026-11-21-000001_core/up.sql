-- herald core schema (SQLite). Times are UTC milliseconds since the Unix epoch.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per named counter; the publish cursor is bumped inside the claim
-- transaction so that cursor order is commit order.
CREATE TABLE counters (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('publish_cursor', 0);

CREATE TABLE announcements (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    level TEXT NOT NULL,
    link TEXT,
    audience TEXT NOT NULL,
    status TEXT NOT NULL,
    publish_at BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    published_at BIGINT,
    retracted_at BIGINT,
    publish_cursor BIGINT UNIQUE,
    targeted BIGINT,
    online_at_publish BIGINT
);
CREATE INDEX announcements_due ON announcements (status, publish_at);

CREATE TABLE announcement_targets (
    announcement_id BIGINT NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (announcement_id, kind, value)
);
CREATE INDEX announcement_targets_by_value ON announcement_targets (kind, value);

CREATE TABLE receipts (
    announcement_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    delivered_at BIGINT,
    read_at BIGINT,
    PRIMARY KEY (announcement_id, user_id)
);
CREATE INDEX receipts_by_user ON receipts (user_id);

-- Users herald has seen connect, with the groups of their latest token:
-- the base of the "targeted" count for "all" and group audiences.
CREATE TABLE known_users (
    user_id TEXT PRIMARY KEY NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE user_groups (
    user_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);
CREATE INDEX user_groups_by_group ON user_groups (group_name);
