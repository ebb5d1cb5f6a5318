-- The claim looks for an earlier pending event of the same announcement to
-- the same endpoint (NOT EXISTS) for every due row it considers, and for the
-- pending events after a run's first one. Over pending rows only, each is
-- one probe, however many delivered rows the announcement has.
CREATE INDEX webhook_outbox_pending_order ON webhook_outbox (announcement_id, endpoint, seq)
    WHERE status = 'pending';
