-- The claim finds, for every due row it considers, the first pending event
-- of the same announcement to the same endpoint, and the pending events after
-- a run's first one. Over pending rows only, each lookup is one probe however
-- many delivered rows the announcement has (the older index by the same
-- columns walks them all).
CREATE INDEX webhook_outbox_pending_order ON webhook_outbox (announcement_id, endpoint, seq)
    WHERE status = 'pending';
