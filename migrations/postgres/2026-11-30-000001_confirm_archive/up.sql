-- Announcements a recipient must confirm ("I have read and understood"),
-- and per recipient when they confirmed it and whether they archived it.
-- Both per-user facts live on the receipt row: one row per (announcement,
-- user) already, keyed for the inbox and the recipient pages.
ALTER TABLE announcements ADD COLUMN requires_confirmation BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE receipts ADD COLUMN confirmed_at BIGINT;
ALTER TABLE receipts ADD COLUMN archived_at BIGINT;
