-- Outbound webhooks (PostgreSQL). Written only when webhook URLs are configured.

-- Per announcement: the last event number handed out (its row is the lock
-- that orders one announcement's events in commit order) and, until its
-- expiry is reported or no longer due (retracted), the time it expires.
CREATE TABLE webhook_announcements (
    announcement_id BIGINT PRIMARY KEY NOT NULL,
    last_seq BIGINT NOT NULL,
    expiry_due BIGINT
);
CREATE INDEX webhook_announcements_expiry ON webhook_announcements (expiry_due)
    WHERE expiry_due IS NOT NULL;

-- The outbox: one row per (event, endpoint), written in the transaction of
-- the fact it reports. `payload` is the exact body, the same on every retry.
CREATE TABLE webhook_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    announcement_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    give_up_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    claim_token TEXT,
    last_attempt_at BIGINT,
    last_status BIGINT,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_outbox_order ON webhook_outbox (announcement_id, endpoint, seq);
CREATE INDEX webhook_outbox_by_status ON webhook_outbox (status, id);
CREATE INDEX webhook_outbox_claim ON webhook_outbox (claim_token);
