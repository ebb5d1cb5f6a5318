//! Abuse of the storage side (issue 10): what a hostile or careless client
//! or admin can make the database do, and what it must refuse.

use crate::helpers::*;
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use herald::db::receipts::{record, BatchOutcome, ReceiptEvent, ReceiptKind};
use herald::domain::AnnouncementId;
use serde_json::{json, Value};

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

/// Writes one receipt batch straight through `db::receipts::record`.
fn record_batch(app: &TestApp, batch: &[(i64, &str, &[&str], ReceiptKind)]) -> BatchOutcome {
    let events: Vec<ReceiptEvent> = batch
        .iter()
        .map(|(id, user, groups, kind)| ReceiptEvent {
            announcement_id: AnnouncementId(*id),
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
    let outbox = app.state.outbox.clone();
    record(&mut conn, &events, herald::db::now_ms(), &outbox).expect("record")
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

// ---- item 1: audiences stay in the database

fn in_ms(ms: i64) -> String {
    herald::domain::rfc3339(herald::db::now_ms() + ms)
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

both_backends!(admin_list_carries_a_sample_of_large_audiences);
async fn admin_list_carries_a_sample_of_large_audiences() {
    let app = spawn_app().await;
    let users = numbered("user", 10_000);
    let mut big = Vec::new();
    for _ in 0..3 {
        let created = app
            .announce(
                json!({"title": "big", "content": "c", "audience": {"users": users},
                "publish_at": in_ms(3_600_000)}),
            )
            .await;
        big.push(id_of(&created));
    }
    let small = app
        .announce(
            json!({"title": "small", "content": "c", "audience": {"users": ["bob", "alice"]}}),
        )
        .await;

    let res = app.admin_get("/api/announcements").await;
    assert_eq!(res.status().as_u16(), 200);
    let body = res.bytes().await.expect("body");
    assert!(
        body.len() < 16_000,
        "a list of three 10 000-recipient announcements is {} bytes",
        body.len()
    );
    let list: Value = serde_json::from_slice(&body).expect("json");
    let items = list["items"].as_array().expect("items");
    let small_item = items
        .iter()
        .find(|i| i["id"] == small["id"])
        .expect("small");
    assert_eq!(small_item["audience"], json!({"users": ["alice", "bob"]}));
    let big_item = items.iter().find(|i| i["id"] == big[0]).expect("big");
    let expected = json!({"users": users[..20], "count": 10_000, "truncated": true});
    assert_eq!(big_item["audience"], expected);
    assert_eq!(app.announcement(big[0]).await["audience"], expected);
}

/// One page of `GET /api/announcements/{id}/audience`.
async fn audience_page(app: &TestApp, id: i64, query: &str) -> Value {
    let res = app
        .admin_get(&format!("/api/announcements/{id}/audience{query}"))
        .await;
    assert_eq!(res.status().as_u16(), 200, "audience page {query}");
    res.json().await.expect("json")
}

fn values(page: &Value) -> Vec<String> {
    page["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

both_backends!(audience_endpoint_pages_through_every_recipient_once);
async fn audience_endpoint_pages_through_every_recipient_once() {
    let app = spawn_app().await;
    let users = numbered("user", 2_500);
    let id = id_of(
        &app.announce(json!({"title": "t", "content": "c", "audience": {"users": users}}))
            .await,
    );
    let mut seen = Vec::new();
    let mut query = "?limit=1000".to_string();
    let mut pages = 0;
    loop {
        let page = audience_page(&app, id, &query).await;
        assert_eq!(page["kind"], "users");
        seen.extend(values(&page));
        pages += 1;
        match page["next_after"].as_str() {
            Some(after) => query = format!("?limit=1000&after={after}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, users, "every recipient once, in order");

    assert_eq!(values(&audience_page(&app, id, "?limit=0").await).len(), 1);
    assert_eq!(
        values(&audience_page(&app, id, "?limit=50000").await).len(),
        1_000
    );
    let groups = app
        .announce(json!({"title": "t", "content": "c", "audience": {"groups": ["ops", "dev"]}}))
        .await;
    let page = audience_page(&app, id_of(&groups), "").await;
    assert_eq!(
        page,
        json!({"id": groups["id"], "kind": "groups", "values": ["dev", "ops"], "next_after": null})
    );
    let all = app.announce_all("everyone").await;
    let page = audience_page(&app, id_of(&all), "").await;
    assert_eq!(
        (page["kind"].clone(), values(&page).len()),
        (json!("all"), 0)
    );

    let missing = app.admin_get("/api/announcements/999999/audience").await;
    assert_eq!(missing.status().as_u16(), 404);
    let anonymous = app
        .http
        .get(format!("{}/api/announcements/{id}/audience", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);
}

both_backends!(receipts_are_accepted_from_the_audience_only);
async fn receipts_are_accepted_from_the_audience_only() {
    let app = spawn_app().await;
    let users = app
        .announce(json!({"title": "u", "content": "c", "audience": {"users": ["alice", "bob"]}}))
        .await;
    let groups = app
        .announce(json!({"title": "g", "content": "c", "audience": {"groups": ["ops"]}}))
        .await;
    let all = app.announce_all("a").await;
    let (users, groups, all) = (id_of(&users), id_of(&groups), id_of(&all));
    for id in [users, groups, all] {
        wait_published(&app, id).await;
    }
    let cases: [(i64, &str, &[&str], u16); 5] = [
        (users, "alice", &[], 200),
        (users, "mallory", &["ops"], 404),
        (groups, "carol", &["dev", "ops"], 200),
        (groups, "dave", &["dev"], 404),
        (all, "erin", &[], 200),
    ];
    for (id, user, user_groups, status) in cases {
        let token = app.token_with_groups(user, user_groups);
        let res = app
            .user_post(&token, &format!("/api/me/inbox/{id}/read"))
            .await;
        assert_eq!(res.status().as_u16(), status, "{user} reads {id}");
    }

    // One batch from many users: each pair is judged on its own.
    let k = ReceiptKind::Delivered;
    let outcome = record_batch(
        &app,
        &[
            (users, "bob", &[], ReceiptKind::Read),
            (users, "bob", &[], k),
            (users, "mallory", &[], k),
            (groups, "bob", &[], k),
            (groups, "frank", &["ops"], k),
            (all, "mallory", &[], k),
            (999_999, "bob", &[], k),
        ],
    );
    assert_eq!((outcome.accepted, outcome.rejected), (4, 3));
    assert_eq!(
        outcome.read,
        vec![(AnnouncementId(users), "bob".to_string())]
    );
    let stats = &app.announcement(users).await["stats"];
    assert_eq!(
        (stats["delivered"].as_i64(), stats["read"].as_i64()),
        (Some(2), Some(2))
    );
    let stats = &app.announcement(groups).await["stats"];
    assert_eq!(stats["delivered"].as_i64(), Some(2));
}

/// Process CPU seconds (user + system) and resident MB, from /proc.
fn cpu_and_rss() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime), counted after the command name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kb / 1024.0)
}

/// Runs `work`, printing its wall time, the process's CPU time and its RSS.
async fn measured<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    let (cpu0, rss0) = cpu_and_rss();
    let start = std::time::Instant::now();
    let out = work.await;
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, rss1) = cpu_and_rss();
    println!(
        "measure: {what}: wall {wall:.3} s, cpu {:.2} s, rss {rss0:.0} -> {rss1:.0} MB",
        cpu1 - cpu0
    );
    out
}

/// 60 published announcements of 10 000 recipients each, then what an admin
/// list, a receipt batch and a burst of syncs cost. Prints figures to
/// compare before and after a change; asserts only that things work.
async fn measure_large_audiences() {
    let app = spawn_app().await;
    let users = numbered("user", 10_000);
    for i in 0..60 {
        app.announce(json!({"title": format!("big {i}"), "content": "c",
            "audience": {"users": users}}))
            .await;
    }
    let list = "/api/announcements?status=scheduled&limit=1";
    while !app
        .admin_get(list)
        .await
        .json::<Value>()
        .await
        .expect("json")["items"]
        .as_array()
        .expect("items")
        .is_empty()
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ids: Vec<i64> = measured("admin list of 60, x5", async {
        let mut ids = Vec::new();
        for _ in 0..5 {
            let res = app.admin_get("/api/announcements?limit=60").await;
            let body = res.bytes().await.expect("body");
            println!("measure: admin list response {} bytes", body.len());
            let list: Value = serde_json::from_slice(&body).expect("json");
            ids = list["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(id_of)
                .collect();
        }
        ids
    })
    .await;
    for (who, user) in [("outsider", "mallory"), ("recipient", "user-00000")] {
        let batch: Vec<(i64, &str, &[&str], ReceiptKind)> = ids
            .iter()
            .map(|&id| (id, user, &[][..], ReceiptKind::Delivered))
            .collect();
        let outcome = measured(&format!("record 60 acks by an {who}, x5"), async {
            let mut last = None;
            for _ in 0..5 {
                last = Some(record_batch(&app, &batch));
            }
            last
        })
        .await;
        println!("measure: {who}: {:?}", outcome.map(|o| o.accepted));
    }
    let mut ws = app.connect("user-00000").await;
    measured(
        "10 syncs from cursor 0, one after the other (600 frames)",
        async {
            for _ in 0..10 {
                ws.send_json(json!({"type": "sync", "data": {"since": 0}}))
                    .await;
                for _ in 0..60 {
                    ws.next_of("announcement").await;
                }
            }
        },
    )
    .await;
}

#[actix_web::test]
#[ignore = "measurement; run by hand"]
async fn measure_large_audiences_sqlite() {
    use_backend(TestBackend::Sqlite);
    measure_large_audiences().await;
}

#[actix_web::test]
#[ignore = "measurement; run by hand"]
async fn measure_large_audiences_postgres() {
    if postgres_url().is_some() {
        use_backend(TestBackend::Postgres);
        measure_large_audiences().await;
    }
}

// ---- item 2: a reschedule racing the scheduler's tick

both_backends!(reschedule_between_due_and_claim_keeps_the_new_time);
async fn reschedule_between_due_and_claim_keeps_the_new_time() {
    use herald::db::announcements::{claim, due, get, insert, update_scheduled, ChangeOutcome};
    use herald::db::outbox::Outbox;
    use herald::domain::{AnnouncementDraft, AnnouncementPatch, Audience, Level, Status};
    let db = TestDb::new();
    let pool = herald::db::connect(&db.url, 2, 5_000).expect("database");
    let mut conn = pool.get().expect("connection");
    let now = herald::db::now_ms();
    let draft = AnnouncementDraft {
        title: "t".into(),
        content: "c".into(),
        level: Level::Info,
        link: None,
        audience: Audience::All,
        publish_at: now,
        expires_at: None,
        requires_confirmation: false,
    };
    let later = now + 365 * 24 * 3_600_000;
    let move_later = AnnouncementPatch {
        publish_at: Some(later),
        ..AnnouncementPatch::default()
    };

    // The tick found it due; the admin moves it a year ahead; the tick claims.
    let id = insert(&mut conn, &draft, now)
        .expect("insert")
        .announcement
        .id;
    assert_eq!(due(&mut conn, now, 10).expect("due"), vec![id]);
    let patched = update_scheduled(&mut conn, id, &move_later, now).expect("patch");
    assert!(matches!(patched, ChangeOutcome::Changed(_)), "{patched:?}");
    let claimed = claim(&mut conn, id, now, &Outbox::disabled()).expect("claim");
    assert!(
        claimed.is_none(),
        "claimed after the reschedule: {claimed:?}"
    );
    let stored = get(&mut conn, id).expect("get").expect("row").announcement;
    assert_eq!(
        (stored.status, stored.publish_at),
        (Status::Scheduled, later)
    );

    // The other order: the claim wins, and the patch is refused.
    let id = insert(&mut conn, &draft, now)
        .expect("insert")
        .announcement
        .id;
    assert!(claim(&mut conn, id, now, &Outbox::disabled())
        .expect("claim")
        .is_some());
    let patched = update_scheduled(&mut conn, id, &move_later, now).expect("patch");
    assert!(
        matches!(patched, ChangeOutcome::NotScheduled(Status::Published)),
        "{patched:?}"
    );
}

/// Two admins patch one announcement at once: one moves the expiry
/// earlier, the other the publish time later, each fine beside the time it
/// read. The second must not commit a pair that reaches no one. PostgreSQL
/// only: SQLite has one writer at a time, and a writer whose snapshot went
/// stale meanwhile fails instead.
#[test]
fn a_patch_racing_a_patch_still_leaves_a_moment_to_be_seen() {
    use diesel::Connection;
    use herald::db::announcements::{get, insert, update_scheduled, ChangeOutcome};
    use herald::db::schema::announcements as a;
    use herald::domain::{AnnouncementDraft, AnnouncementPatch, Audience, Level};
    let Some(base) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&base);
    let pool = herald::db::connect(&db.url, 2, 5_000).expect("database");
    let (now, hour) = (herald::db::now_ms(), 3_600_000);
    let draft = AnnouncementDraft {
        title: "t".into(),
        content: "c".into(),
        level: Level::Info,
        link: None,
        audience: Audience::All,
        publish_at: now + hour,
        expires_at: Some(now + 2 * hour),
        requires_confirmation: false,
    };
    let mut conn = pool.get().expect("connection");
    let id = insert(&mut conn, &draft, now)
        .expect("insert")
        .announcement
        .id;

    // The first admin's change, its row lock held until the second admin's
    // UPDATE waits on it (it read the row before this commits).
    let (locked, holding) = std::sync::mpsc::channel();
    let first = {
        let (pool, url) = (pool.clone(), db.url.clone());
        std::thread::spawn(move || {
            let mut conn = pool.get().expect("connection");
            conn.transaction(|conn| {
                diesel::update(a::table.find(id.0))
                    .set(a::expires_at.eq(Some(now + hour / 2)))
                    .execute(conn)?;
                locked.send(()).ok();
                wait_for_a_lock_waiter(&url);
                Ok::<_, diesel::result::Error>(())
            })
            .expect("the first patch");
        })
    };
    holding.recv().expect("the first patch holds the row");
    let later = AnnouncementPatch {
        publish_at: Some(now + hour + hour / 2),
        ..AnnouncementPatch::default()
    };
    let outcome = update_scheduled(&mut conn, id, &later, now).expect("the second patch");
    first.join().expect("the first patch's thread");

    assert!(
        matches!(&outcome, ChangeOutcome::Invalid(e) if e.field == "publish_at"),
        "{outcome:?}"
    );
    let stored = get(&mut conn, id).expect("get").expect("row").announcement;
    assert_eq!(
        (stored.publish_at, stored.expires_at),
        (now + hour, Some(now + hour / 2))
    );
}

/// Waits (a few seconds at most) until some session of the database at
/// `url` is blocked on a lock.
fn wait_for_a_lock_waiter(url: &str) {
    use diesel::Connection;
    let mut conn = diesel::PgConnection::establish(url).expect("observer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let waiting: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock')",
        ))
        .get_result(&mut conn)
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

// ---- item 3: NUL bytes in text fields

async fn assert_422(res: reqwest::Response, field: &str, what: &str) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 422, "{what}: {body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
}

both_backends!(nul_bytes_are_refused_with_the_field);
async fn nul_bytes_are_refused_with_the_field() {
    let app = spawn_app().await;
    let base = json!({"title": "t", "content": "c", "audience": {"all": true},
        "publish_at": in_ms(3_600_000)});
    let id = id_of(&app.announce(base.clone()).await);
    let nul = "a\u{0}b";
    let cases = [
        (json!({"title": nul}), "title"),
        (json!({"content": nul}), "content"),
        (json!({"link": "/a\u{0}b"}), "link"),
        (
            json!({"audience": {"users": ["alice", nul]}}),
            "audience.users",
        ),
        (json!({"audience": {"groups": [nul]}}), "audience.groups"),
    ];
    for (change, field) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let res = app.admin_post("/api/announcements", &body).await;
        assert_422(res, field, &format!("create {change}")).await;
        let res = app
            .admin_patch(&format!("/api/announcements/{id}"), &change)
            .await;
        assert_422(res, field, &format!("patch {change}")).await;
    }
    for (body, field) in [
        (json!({"user_id": nul}), "user_id"),
        (
            json!({"user_id": "alice", "groups": ["ops", nul]}),
            "groups",
        ),
    ] {
        let res = app.admin_post("/api/tokens", &body).await;
        assert_422(res, field, &format!("token {body}")).await;
    }
    let res = app
        .admin_get(&format!("/api/announcements/{id}/audience?after=a%00"))
        .await;
    assert_eq!(res.status().as_u16(), 400, "NUL in the audience cursor");
    let list: Value = app
        .admin_get("/api/announcements")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert_eq!(app.announcement(id).await["title"], "t");
}

// ---- item 4: links that leave the site while looking like paths

both_backends!(off_site_tricks_in_links_get_422);
async fn off_site_tricks_in_links_get_422() {
    let app = spawn_app().await;
    let id = id_of(
        &app.announce(
            json!({"title": "t", "content": "c", "audience": {"all": true},
            "publish_at": in_ms(3_600_000)}),
        )
        .await,
    );
    for link in ["/\\evil.example", "//evil.example", "/\t/evil.example"] {
        let body = json!({"title": "t", "content": "c", "audience": {"all": true}, "link": link});
        let res = app.admin_post("/api/announcements", &body).await;
        assert_422(res, "link", &format!("create {link:?}")).await;
        let res = app
            .admin_patch(&format!("/api/announcements/{id}"), &json!({"link": link}))
            .await;
        assert_422(res, "link", &format!("patch {link:?}")).await;
    }
    let ok = app
        .admin_patch(
            &format!("/api/announcements/{id}"),
            &json!({"link": "/news/1"}),
        )
        .await;
    assert_eq!(ok.status().as_u16(), 200);
}
