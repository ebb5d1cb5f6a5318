//! Abuse of the storage side (issue 10): what a hostile or careless client
//! or admin can make the database do, and what it must refuse.

use crate::helpers::*;
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use herald::db::receipts::{record, BatchOutcome, ReceiptEvent, ReceiptKind};
use serde_json::Value;

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

/// Writes one receipt batch straight through `db::receipts::record`.
fn record_batch(app: &TestApp, batch: &[(i64, &str, &[&str], ReceiptKind)]) -> BatchOutcome {
    let events: Vec<ReceiptEvent> = batch
        .iter()
        .map(|(id, user, groups, kind)| ReceiptEvent {
            announcement_id: *id,
            user_id: user.to_string(),
            groups: groups
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .into(),
            kind: *kind,
        })
        .collect();
    let mut conn = app.state.pool.get().expect("connection");
    record(&mut conn, &events, herald::db::now_ms()).expect("record")
}

async fn wait_published(app: &TestApp, id: i64) {
    app.wait_for_announcement(id, |v| v["status"] == "published")
        .await;
}

// ---- item 5: expired announcements take no receipts

/// Moves the announcement's expiry into the past, as time would.
fn expire_now(app: &TestApp, id: i64) {
    use herald::db::schema::announcements as a;
    let mut conn = app.state.pool.get().expect("connection");
    diesel::update(a::table.find(id))
        .set(a::expires_at.eq(Some(herald::db::now_ms() - 1)))
        .execute(&mut *conn)
        .expect("expire");
}

both_backends!(expired_announcement_cannot_be_marked_read_or_acked);
async fn expired_announcement_cannot_be_marked_read_or_acked() {
    let app = spawn_app().await;
    let id = id_of(&app.announce_all("brief").await);
    wait_published(&app, id).await;
    expire_now(&app, id);

    let token = app.token("alice");
    let res = app
        .user_post(&token, &format!("/api/me/inbox/{id}/read"))
        .await;
    assert_eq!(
        res.status().as_u16(),
        404,
        "read of an expired announcement"
    );
    let outcome = record_batch(&app, &[(id, "alice", &[], ReceiptKind::Delivered)]);
    assert_eq!((outcome.accepted, outcome.rejected), (0, 1));
    let stats = &app.announcement(id).await["stats"];
    assert_eq!(
        (stats["delivered"].as_i64(), stats["read"].as_i64()),
        (Some(0), Some(0))
    );
}
