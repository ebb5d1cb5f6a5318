//! Publishing, as the admin and the scheduler see it: create, list, change,
//! withdraw, find what is due and claim it, add the publish stats. Who sees
//! a published announcement, and in which order, is `timeline`.

use super::events::{self, Event};
use super::models::{self, AnnouncementInsertForm, AnnouncementRow, AnnouncementUpdateForm};
use super::outbox::{self, Outbox};
use super::schema::announcements as a;
use super::{audiences, timeline};
use super::{DbConn, DbError};
use crate::domain::webhook::OutboundEvent;
use crate::domain::{
    AnnouncementDraft, AnnouncementId, AnnouncementPatch, FieldError, FullAnnouncement, Status,
    SummarizedAnnouncement,
};
use diesel::prelude::*;

type Backend = <DbConn as Connection>::Backend;

/// Inserts a new scheduled announcement and its targets in one transaction.
pub fn insert(
    conn: &mut DbConn,
    draft: &AnnouncementDraft,
    now: i64,
) -> Result<FullAnnouncement, DbError> {
    crate::db::write_transaction(conn, |conn| {
        let form = AnnouncementInsertForm {
            title: &draft.title,
            content: &draft.content,
            level: draft.level.as_str(),
            link: draft.link.as_deref(),
            audience: draft.audience.kind().as_str(),
            status: Status::Scheduled.as_str(),
            publish_at: draft.publish_at,
            expires_at: draft.expires_at,
            created_at: now,
            updated_at: now,
            requires_confirmation: draft.requires_confirmation,
        };
        let id = insert_returning_id(conn, &form)?;
        audiences::write(conn, id, &draft.audience)?;
        let row: AnnouncementRow = a::table
            .find(id.0)
            .select(AnnouncementRow::as_select())
            .first(conn)?;
        Ok(FullAnnouncement {
            announcement: row.into(),
            audience: draft.audience.clone(),
        })
    })
}

/// The one backend-specific insert: PostgreSQL reports the new id with
/// `RETURNING`, SQLite with `last_insert_rowid()` on the same connection.
fn insert_returning_id(
    conn: &mut DbConn,
    form: &AnnouncementInsertForm<'_>,
) -> Result<AnnouncementId, diesel::result::Error> {
    let id = match conn {
        DbConn::Pg(c) => diesel::insert_into(a::table)
            .values(form)
            .returning(a::id)
            .get_result(c)?,
        DbConn::Sqlite(c) => {
            diesel::insert_into(a::table).values(form).execute(c)?;
            diesel::select(last_insert_rowid()).get_result(c)?
        }
    };
    Ok(AnnouncementId(id))
}

diesel::define_sql_function!(fn last_insert_rowid() -> BigInt);

pub fn get(conn: &mut DbConn, id: AnnouncementId) -> Result<Option<FullAnnouncement>, DbError> {
    let row: Option<AnnouncementRow> = a::table
        .find(id.0)
        .select(AnnouncementRow::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(row) => Ok(audiences::attach(conn, vec![row.into()])?.pop()),
        None => Ok(None),
    }
}

/// One announcement with a summary of its audience (see `list`).
pub fn get_summarized(
    conn: &mut DbConn,
    id: AnnouncementId,
) -> Result<Option<SummarizedAnnouncement>, DbError> {
    let rows = a::table
        .find(id.0)
        .select(AnnouncementRow::as_select())
        .load(conn)?;
    Ok(audiences::summarize(conn, models::announcements(rows))?.pop())
}

/// Newest first; `before` is an id from the previous page. Audiences come
/// as summaries: the admin console polls this, and a full page of large
/// audiences would be megabytes.
pub fn list(
    conn: &mut DbConn,
    status: Option<Status>,
    before: Option<AnnouncementId>,
    limit: i64,
) -> Result<Vec<SummarizedAnnouncement>, DbError> {
    let mut query = a::table
        .select(AnnouncementRow::as_select())
        .order(a::id.desc())
        .limit(limit)
        .into_boxed::<Backend>();
    if let Some(status) = status {
        query = query.filter(a::status.eq(status.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(a::id.lt(before.0));
    }
    let rows = query.load(conn)?;
    Ok(audiences::summarize(conn, models::announcements(rows))?)
}

#[derive(Debug)]
pub enum ChangeOutcome {
    Changed(Box<FullAnnouncement>),
    NotFound,
    /// The announcement is no longer scheduled; carries its status.
    NotScheduled(Status),
    /// Patched, the announcement would expire at or before it publishes.
    Invalid(FieldError),
}

/// Applies a patch while the announcement is still scheduled and its
/// patched times leave it a moment to be seen. Both checks are part of the
/// UPDATE as well as of the read before it, so a concurrent publish or
/// another PATCH cannot slip between (PostgreSQL re-evaluates the WHERE on
/// the row version it waited for; on SQLite a writer whose read went stale
/// fails instead).
pub fn update_scheduled(
    conn: &mut DbConn,
    id: AnnouncementId,
    patch: &AnnouncementPatch,
    now: i64,
) -> Result<ChangeOutcome, DbError> {
    crate::db::write_transaction(conn, |conn| {
        let Some(current) = get(conn, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        let stored = &current.announcement;
        if stored.status != Status::Scheduled {
            return Ok(ChangeOutcome::NotScheduled(stored.status));
        }
        if let Err(error) = patch.check_times(stored.publish_at, stored.expires_at) {
            return Ok(ChangeOutcome::Invalid(error));
        }
        let changed = diesel::update(
            a::table
                .filter(a::id.eq(id.0))
                .filter(a::status.eq(Status::Scheduled.as_str()))
                .filter(keeps_a_moment(patch)),
        )
        .set(&AnnouncementUpdateForm::new(patch, now))
        .execute(conn)?;
        if changed == 0 {
            return Ok(match get(conn, id)? {
                Some(f) if f.announcement.status == Status::Scheduled => {
                    ChangeOutcome::Invalid(patch.times_error())
                }
                found => ChangeOutcome::NotScheduled(
                    found.map_or(Status::Cancelled, |f| f.announcement.status),
                ),
            });
        }
        if let Some(audience) = &patch.audience {
            audiences::write(conn, id, audience)?;
        }
        match get(conn, id)? {
            Some(full) => Ok(ChangeOutcome::Changed(Box::new(full))),
            None => Ok(ChangeOutcome::NotFound),
        }
    })
}

/// `AnnouncementPatch::check_times` in SQL, against the row as the UPDATE
/// finds it: whatever the patch does not set comes from the row.
fn keeps_a_moment(
    patch: &AnnouncementPatch,
) -> Box<dyn BoxableExpression<a::table, Backend, SqlType = diesel::sql_types::Bool>> {
    use diesel::sql_types::Bool;
    let no_expiry = a::expires_at.is_null();
    match (patch.publish_at, patch.expires_at) {
        // No expiry, or both times from the patch (checked already).
        (_, Some(None)) | (Some(_), Some(Some(_))) => Box::new(true.into_sql::<Bool>()),
        (None, Some(Some(expires_at))) => Box::new(a::publish_at.lt(expires_at)),
        (Some(publish_at), None) => {
            Box::new(no_expiry.or(a::expires_at.assume_not_null().gt(publish_at)))
        }
        (None, None) => Box::new(no_expiry.or(a::expires_at.assume_not_null().gt(a::publish_at))),
    }
}

#[derive(Debug)]
pub enum WithdrawOutcome {
    Cancelled(FullAnnouncement),
    /// Withdrawn after publishing; on PostgreSQL every node was told in
    /// the same transaction.
    Retracted(FullAnnouncement),
    /// Already cancelled or retracted: nothing changed.
    Unchanged(FullAnnouncement),
    NotFound,
}

/// Cancels a scheduled announcement or retracts a published one; a
/// retraction writes its `announcement.retracted` event in the same
/// transaction (and its expiry is then never reported).
pub fn withdraw(
    conn: &mut DbConn,
    id: AnnouncementId,
    now: i64,
    outbox: &Outbox,
) -> Result<WithdrawOutcome, DbError> {
    let outcome = crate::db::write_transaction::<_, DbError, _>(conn, |conn| {
        let cancelled = diesel::update(
            a::table
                .filter(a::id.eq(id.0))
                .filter(a::status.eq(Status::Scheduled.as_str())),
        )
        .set((
            a::status.eq(Status::Cancelled.as_str()),
            a::updated_at.eq(now),
        ))
        .execute(conn)?;
        let retracted = if cancelled == 0 {
            diesel::update(
                a::table
                    .filter(a::id.eq(id.0))
                    .filter(a::status.eq(Status::Published.as_str())),
            )
            .set((
                a::status.eq(Status::Retracted.as_str()),
                a::retracted_at.eq(now),
                a::updated_at.eq(now),
            ))
            .execute(conn)?
        } else {
            0
        };
        let Some(full) = get(conn, id)? else {
            return Ok(WithdrawOutcome::NotFound);
        };
        Ok(if cancelled == 1 {
            WithdrawOutcome::Cancelled(full)
        } else if retracted == 1 {
            events::notify(conn, &Event::Retracted { id })?;
            if outbox.is_enabled() {
                outbox::lock(conn, id)?;
                outbox::set_expiry(conn, id, None)?;
                outbox::enqueue(conn, outbox, id, &[OutboundEvent::retracted(id, now)], now)?;
            }
            WithdrawOutcome::Retracted(full)
        } else {
            WithdrawOutcome::Unchanged(full)
        })
    })?;
    if matches!(outcome, WithdrawOutcome::Retracted(_)) && outbox.is_enabled() {
        outbox.ring();
    }
    Ok(outcome)
}

/// Ids of scheduled announcements whose time has come, oldest first.
pub fn due(conn: &mut DbConn, now: i64, limit: i64) -> Result<Vec<AnnouncementId>, DbError> {
    let ids = a::table
        .filter(a::status.eq(Status::Scheduled.as_str()))
        .filter(a::publish_at.le(now))
        .order((a::publish_at, a::id))
        .select(a::id)
        .limit(limit)
        .load(conn)?;
    Ok(ids.into_iter().map(AnnouncementId).collect())
}

/// The earliest publish time among scheduled announcements.
pub fn next_due(conn: &mut DbConn) -> Result<Option<i64>, DbError> {
    Ok(a::table
        .filter(a::status.eq(Status::Scheduled.as_str()))
        .select(diesel::dsl::min(a::publish_at))
        .first(conn)?)
}

/// Claims one due announcement for publishing. Exactly one caller wins: the
/// status check is in the UPDATE itself (on PostgreSQL a concurrent claimer
/// waits for the winner's row lock, then re-checks the status and finds it
/// published), and the cursor is bumped in the same transaction, so cursors
/// are handed out in commit order. The UPDATE re-checks the publish time
/// too: the id came from `due` earlier, and a PATCH that moved it later in
/// between must win (the row stays scheduled at the new time) rather than
/// answer 200 while the old time publishes it; a PATCH that comes after the
/// claim finds it published and answers 409. On PostgreSQL the NOTIFY to every node
/// is part of the transaction too: it goes out if and only if the claim
/// commits, and in commit order; so is the `announcement.published` webhook
/// event, and the note to report its expiry. Returns `None` when someone
/// else claimed (or cancelled, or rescheduled) it first.
pub fn claim(
    conn: &mut DbConn,
    id: AnnouncementId,
    now: i64,
    outbox: &Outbox,
) -> Result<Option<FullAnnouncement>, DbError> {
    let claimed = crate::db::write_transaction::<_, DbError, _>(conn, |conn| {
        let won = diesel::update(
            a::table
                .filter(a::id.eq(id.0))
                .filter(a::status.eq(Status::Scheduled.as_str()))
                .filter(a::publish_at.le(now)),
        )
        .set((
            a::status.eq(Status::Published.as_str()),
            a::published_at.eq(now),
            a::updated_at.eq(now),
        ))
        .execute(conn)?;
        if won != 1 {
            return Ok(None);
        }
        let Some(mut full) = get(conn, id)? else {
            return Ok(None);
        };
        let targeted = super::users::count_targeted(conn, &full.audience)?;
        // The counter row is the one lock every claim takes, and it is held
        // until commit: cursors are handed out in commit order. Taken last
        // so that it is held as briefly as possible.
        let cursor = timeline::next_cursor(conn)?;
        diesel::update(a::table.find(id.0))
            .set((a::publish_cursor.eq(cursor.0), a::targeted.eq(targeted)))
            .execute(conn)?;
        full.announcement.cursor = Some(cursor);
        full.announcement.targeted = Some(targeted);
        events::notify(conn, &Event::Published { id, cursor })?;
        if outbox.is_enabled() {
            let a = &full.announcement;
            outbox::lock(conn, id)?;
            outbox::set_expiry(conn, id, a.expires_at)?;
            let event = OutboundEvent::published(a, &full.audience);
            outbox::enqueue(conn, outbox, id, &[event], now)?;
        }
        Ok(Some(full))
    })?;
    if claimed.is_some() && outbox.is_enabled() {
        outbox.ring();
    }
    Ok(claimed)
}

/// Adds the users one node had online when it delivered each announcement
/// (every node adds its own; a user with tabs on two nodes counts twice).
pub fn add_online(conn: &mut DbConn, counts: &[(AnnouncementId, i64)]) -> Result<(), DbError> {
    crate::db::write_transaction(conn, |conn| {
        for &(id, online) in counts {
            diesel::update(a::table.find(id.0))
                .set(
                    a::online_at_publish
                        .eq((coalesce(a::online_at_publish, 0i64) + online).nullable()),
                )
                .execute(conn)?;
        }
        Ok(())
    })
}

diesel::define_sql_function! {
    /// SQL `COALESCE` for a nullable count; both backends spell it the same.
    fn coalesce(
        x: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        y: diesel::sql_types::BigInt,
    ) -> diesel::sql_types::BigInt;
}
