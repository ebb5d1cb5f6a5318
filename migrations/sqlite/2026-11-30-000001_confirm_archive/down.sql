ALTER TABLE receipts DROP COLUMN archived_at;
ALTER TABLE receipts DROP COLUMN confirmed_at;
ALTER TABLE announcements DROP COLUMN requires_confirmation;
