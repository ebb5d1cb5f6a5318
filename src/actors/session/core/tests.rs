//! The session core on its own: no socket, no database, no actor system.

use super::*;
use crate::auth::TokenKeys;
use serde_json::Value;

const SECRET: &str = "core-test-secret-0123";

fn core_with(legacy: bool, groups: &[&str]) -> SessionCore {
    SessionCore::new(CoreParams {
        id: 7,
        user_id: "alice".into(),
        groups: groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .into(),
        token_exp: now_secs() + 3600,
        legacy,
        since: Some(Cursor(0)),
        heartbeat_ms: 25_000,
        frames_per_second: 20,
        max_frame_bytes: 1_000,
    })
}

fn core() -> SessionCore {
    core_with(false, &[])
}

fn keys() -> TokenKeys {
    TokenKeys::new(SECRET)
}

fn announcement(id: i64, cursor: i64) -> Push {
    Push::Announcement(Arc::new(Prepared {
        id: AnnouncementId(id),
        cursor: Cursor(cursor),
        v1: format!(r#"{{"type":"announcement","data":{{"id":{id}}}}}"#).into(),
        legacy: format!(r#"{{"type":"announcement","id":{id}}}"#).into(),
    }))
}

fn page(cursors: &[i64], more: bool) -> ReplayPage {
    ReplayPage {
        frames: cursors
            .iter()
            .map(|c| {
                (
                    Cursor(*c),
                    format!(r#"{{"type":"announcement","data":{{"id":{c}}}}}"#),
                )
            })
            .collect(),
        more,
    }
}

/// The frames the effects send, as JSON, in order.
fn sent(out: &[Effect]) -> Vec<Value> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send(f) | Effect::Deliver(f) => serde_json::from_str(f).ok(),
            _ => None,
        })
        .collect()
}

fn kinds(out: &[Effect]) -> Vec<String> {
    sent(out)
        .iter()
        .map(|f| f["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn closes(out: &[Effect]) -> Vec<u16> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Close(code, _) => Some(*code),
            _ => None,
        })
        .collect()
}

/// A core that has registered and finished an empty catch-up at `cursor`.
fn live_at(cursor: i64) -> SessionCore {
    let mut core = core();
    let mut out = Effects::new();
    core.registered(&mut out);
    let opening = Opening {
        cursor: Cursor(cursor),
        unread: 0,
        page: ReplayPage::default(),
    };
    core.opened(Some(Cursor(0)), opening, 0, &mut out);
    core
}

#[test]
fn registration_loads_the_opening_then_welcomes_and_replays() {
    let mut core = core();
    let mut out = Effects::new();
    core.registered(&mut out);
    assert_eq!(
        out[..],
        [Effect::Load(Load::Open {
            since: Some(Cursor(0)),
            first: true
        })]
    );
    out.clear();
    let opening = Opening {
        cursor: Cursor(2),
        unread: 2,
        page: page(&[1, 2], false),
    };
    core.opened(Some(Cursor(0)), opening, 0, &mut out);
    assert_eq!(kinds(&out), ["welcome", "announcement", "announcement"]);
    assert_eq!(sent(&out)[0]["data"]["unread"], 2);
}

#[test]
fn legacy_sessions_get_no_welcome() {
    let mut core = core_with(true, &[]);
    let mut out = Effects::new();
    core.opened(Some(Cursor(0)), Opening::default(), 0, &mut out);
    assert!(kinds(&out).is_empty());
}

#[test]
fn pushes_during_the_catch_up_wait_and_keep_their_order() {
    let mut core = core();
    let mut out = Effects::new();
    core.registered(&mut out);
    out.clear();
    core.on_push(announcement(3, 3), &mut out);
    core.on_push(
        Push::Frame(protocol::retract(AnnouncementId(2)).into()),
        &mut out,
    );
    assert!(out.is_empty(), "nothing is sent before the replay");
    let opening = Opening {
        cursor: Cursor(2),
        unread: 0,
        page: page(&[1, 2], false),
    };
    core.opened(Some(Cursor(0)), opening, 0, &mut out);
    let frames = sent(&out);
    let order: Vec<(String, i64)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or_default().to_string(),
                f["data"]["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        order[1..],
        [
            ("announcement".to_string(), 1),
            ("announcement".to_string(), 2),
            ("announcement".to_string(), 3),
            ("retract".to_string(), 2),
        ]
    );
    let dequeued: usize = out
        .iter()
        .filter_map(|e| match e {
            Effect::Dequeued(n) => Some(*n),
            _ => None,
        })
        .sum();
    assert!(
        dequeued > 0,
        "what waited leaves the queued count when sent"
    );
}

#[test]
fn a_live_copy_of_a_replayed_announcement_is_dropped_by_cursor() {
    let mut core = core();
    let mut out = Effects::new();
    core.registered(&mut out);
    core.on_push(announcement(2, 2), &mut out);
    out.clear();
    let opening = Opening {
        cursor: Cursor(2),
        unread: 0,
        page: page(&[1, 2], false),
    };
    core.opened(Some(Cursor(0)), opening, 0, &mut out);
    core.on_push(announcement(3, 3), &mut out);
    let ids: Vec<i64> = sent(&out)
        .iter()
        .filter(|f| f["type"] == "announcement")
        .map(|f| f["data"]["id"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn the_replay_pages_up_to_the_opening_cursor() {
    let mut core = core();
    let mut out = Effects::new();
    core.opened(
        Some(Cursor(0)),
        Opening {
            cursor: Cursor(9),
            unread: 0,
            page: page(&[1, 2], true),
        },
        0,
        &mut out,
    );
    assert_eq!(
        out.last(),
        Some(&Effect::Load(Load::Page {
            after: Cursor(2),
            upto: Cursor(9)
        }))
    );
    out.clear();
    core.on_push(announcement(10, 10), &mut out);
    assert!(out.is_empty(), "still catching up");
    core.paged(page(&[5], false), Cursor(9), &mut out);
    // 9 was covered (nothing more for this user up to it); 10 is live.
    core.on_push(announcement(8, 8), &mut out);
    let ids: Vec<i64> = sent(&out)
        .iter()
        .map(|f| f["data"]["id"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(ids, [5, 10]);
}

#[test]
fn a_sync_during_the_catch_up_runs_after_it_from_the_lowest_cursor() {
    let mut core = core();
    let mut out = Effects::new();
    core.registered(&mut out);
    core.on_text(r#"{"type":"sync","data":{"since":5}}"#, &mut out);
    core.on_text(r#"{"type":"sync","data":{"since":3}}"#, &mut out);
    out.clear();
    core.opened(Some(Cursor(0)), Opening::default(), 0, &mut out);
    assert_eq!(
        out.last(),
        Some(&Effect::Load(Load::Open {
            since: Some(Cursor(3)),
            first: false
        }))
    );
}

/// A `refresh` frame as the transport sees it: the core asks for the token
/// to be checked, the transport checks it (here without a JWKS) and hands
/// the verdict back.
fn refresh_with(core: &mut SessionCore, token: &str, out: &mut Effects) {
    let mut asked = Effects::new();
    core.on_text(
        &format!(r#"{{"type":"refresh","data":{{"token":"{token}"}}}}"#),
        &mut asked,
    );
    assert_eq!(asked[..], [Effect::Verify(token.to_string())]);
    core.refreshed(keys().verify_for(token, core.user_id()), out);
}

#[test]
fn refresh_replaces_the_groups_and_tells_the_registry() {
    let mut core = core_with(false, &["a", "b"]);
    let mut out = Effects::new();
    let same = keys()
        .mint("alice", &["a".into(), "b".into()], 60)
        .expect("mint")
        .0;
    refresh_with(&mut core, &same, &mut out);
    assert!(out.is_empty(), "same groups: nothing to tell");
    let narrower = keys().mint("alice", &["a".into()], 60).expect("mint").0;
    refresh_with(&mut core, &narrower, &mut out);
    assert_eq!(out[..], [Effect::Regroup(vec!["a".to_string()].into())]);
    assert_eq!(&**core.groups(), ["a".to_string()]);
}

#[test]
fn refresh_with_another_users_token_is_refused() {
    let mut core = live_at(0);
    let mut out = Effects::new();
    let bob = keys().mint("bob", &[], 60).expect("mint").0;
    refresh_with(&mut core, &bob, &mut out);
    assert_eq!(sent(&out)[0]["data"]["code"], "bad_token");
    // Claims for someone else are refused even when a transport passes
    // them on as valid.
    let mut out = Effects::new();
    let claims = keys().verify(&bob).expect("valid for bob");
    core.refreshed(Ok(claims), &mut out);
    assert_eq!(sent(&out)[0]["data"]["code"], "bad_token");
}

#[test]
fn ten_bad_frames_get_errors_the_eleventh_closes_4008() {
    let mut core = live_at(0);
    let mut out = Effects::new();
    for _ in 0..MAX_STRIKES {
        core.on_text("{not json", &mut out);
    }
    assert_eq!(kinds(&out), vec!["error"; MAX_STRIKES as usize]);
    assert!(closes(&out).is_empty());
    core.on_text("{not json", &mut out);
    assert_eq!(closes(&out), [close::BAD_INPUT]);
}

#[test]
fn a_burst_past_twice_the_rate_is_rate_limited() {
    let mut core = live_at(0);
    let mut out = Effects::new();
    for _ in 0..41 {
        core.on_text("ping", &mut out);
    }
    let frames = sent(&out);
    assert_eq!(frames.iter().filter(|f| f["type"] == "pong").count(), 40);
    assert_eq!(frames[40]["data"]["code"], "rate_limited");
}

#[test]
fn fragments_are_reassembled_within_the_limit() {
    let mut core = live_at(0);
    let mut out = Effects::new();
    let first = Fragment::First {
        text: true,
        bytes: br#"{"type":"#.to_vec(),
    };
    core.on_fragment(first, &mut out);
    core.on_fragment(Fragment::Last(br#""ping"}"#.to_vec()), &mut out);
    assert_eq!(kinds(&out), ["pong"]);
    out.clear();
    let big = Fragment::First {
        text: true,
        bytes: vec![b' '; 600],
    };
    core.on_fragment(big, &mut out);
    core.on_fragment(Fragment::Continue(vec![b' '; 600]), &mut out);
    assert_eq!(closes(&out), [close::TOO_BIG]);
}

#[test]
fn an_expired_token_closes_4001() {
    let mut core = live_at(0);
    let mut out = Effects::new();
    assert!(core.expiry(&mut out).is_some());
    core.token_exp = now_secs() - 1;
    assert!(core.expiry(&mut out).is_none());
    assert_eq!(sent(&out)[0]["data"]["code"], "token_expired");
    assert_eq!(closes(&out), [close::UNAUTHORIZED]);
}

#[test]
fn a_failed_load_closes_1013_with_a_jittered_reconnect_hint() {
    let mut c = core();
    let mut out = Effects::new();
    c.registered(&mut out);
    let load = match out.as_slice() {
        [Effect::Load(load)] => *load,
        other => panic!("{other:?}"),
    };
    let mut out = Effects::new();
    c.loaded(load, Err(DbError::Busy("catch-up queue")), &mut out);
    assert_eq!(sent(&out)[0]["data"]["code"], "storage_unavailable");
    let reason = out
        .iter()
        .find_map(|e| match e {
            Effect::Close(close::TRY_AGAIN, reason) => Some(reason.clone()),
            _ => None,
        })
        .expect("a 1013 close");
    let ms: u64 = reason
        .split("reconnect in ")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .expect("a hint in the reason");
    assert!((1_000..5_000).contains(&ms), "{reason}");
}
