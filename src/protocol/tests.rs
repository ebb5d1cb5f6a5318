//! Frame parsing and serialisation.

use super::*;

#[test]
fn every_heartbeat_alias_is_a_heartbeat() {
    for text in [
        "ping",
        "heartCheck",
        r#"{"type":"ping"}"#,
        r#"{"type":"headerBeat","msg":"test"}"#,
        r#"{"sendType":"HEALTH"}"#,
    ] {
        assert_eq!(
            parse_client_text(text),
            Ok(ClientFrame::Heartbeat),
            "{text}"
        );
    }
}

#[test]
fn ack_read_sync_refresh_parse() {
    assert_eq!(
        parse_client_text(r#"{"type":"ack","data":{"ids":[1,2]}}"#),
        Ok(ClientFrame::Ack(vec![AnnouncementId(1), AnnouncementId(2)]))
    );
    assert_eq!(
        parse_client_text(r#"{"type":"read","data":{"ids":[3]}}"#),
        Ok(ClientFrame::Read(vec![AnnouncementId(3)]))
    );
    assert_eq!(
        parse_client_text(r#"{"type":"confirm","data":{"ids":[4]}}"#),
        Ok(ClientFrame::Confirm(vec![AnnouncementId(4)]))
    );
    assert_eq!(
        parse_client_text(r#"{"type":"sync","data":{"since":7}}"#),
        Ok(ClientFrame::Sync(Cursor(7)))
    );
    assert_eq!(
        parse_client_text(r#"{"type":"refresh","data":{"token":"t"}}"#),
        Ok(ClientFrame::Refresh("t".into()))
    );
}

#[test]
fn malformed_frames_get_codes() {
    let code = |t: &str| parse_client_text(t).map_err(|e| e.code);
    assert_eq!(code("{not json"), Err("bad_json"));
    assert_eq!(code("[1,2]"), Err("bad_json"));
    assert_eq!(code(r#"{"type":"dance"}"#), Err("unknown_type"));
    assert_eq!(code(r#"{"data":{}}"#), Err("bad_frame"));
    assert_eq!(
        code(r#"{"type":"ack","data":{"ids":"x"}}"#),
        Err("bad_frame")
    );
    assert_eq!(code(r#"{"type":"ack"}"#), Err("bad_frame"));
    let many: Vec<i64> = (0..2_000).collect();
    let big = json!({"type":"ack","data":{"ids": many}}).to_string();
    assert_eq!(code(&big), Err("bad_frame"));
    let big = json!({"type":"confirm","data":{"ids": many}}).to_string();
    assert_eq!(code(&big), Err("bad_frame"));
}

#[test]
fn unknown_type_message_is_bounded_and_char_safe() {
    let long = format!(r#"{{"type":"{}"}}"#, "é".repeat(500));
    let err = parse_client_text(&long).expect_err("unknown");
    assert!(err.msg.chars().count() < 80);
}

#[test]
fn legacy_announcement_has_top_level_fields() {
    let view = AnnouncementView {
        id: AnnouncementId(5),
        title: "T".into(),
        content: "C".into(),
        level: Level::Info,
        link: None,
        publish_at: "2026-01-01T00:00:00.000Z".into(),
        published_at: "2026-01-01T00:00:01.000Z".into(),
        expires_at: None,
        cursor: Some(Cursor(9)),
        requires_confirmation: true,
        confirmed: false,
    };
    let v: Value = serde_json::from_str(&announcement(&view, true)).expect("json");
    assert_eq!(v["title"], "T");
    assert_eq!(v["data"]["title"], "T");
    assert_eq!(v["data"]["cursor"], 9);
    assert_eq!(v["data"]["requires_confirmation"], true);
    assert_eq!(v["data"]["confirmed"], false);
    assert_eq!(
        (&v["level"], &v["data"]["level"]),
        (&json!("info"), &json!("info"))
    );
    let v: Value = serde_json::from_str(&announcement(&view, false)).expect("json");
    assert!(v.get("title").is_none());
    let p: Value = serde_json::from_str(&pong(1, true)).expect("json");
    assert_eq!(p["code"], 2);
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in proptest::prelude::any::<String>()) {
        let _ = parse_client_text(&text);
    }

    #[test]
    fn arbitrary_bytes_as_lossy_text_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = parse_client_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn json_shaped_frames_never_panic(
        kind in "(ping|ack|read|confirm|sync|refresh|headerBeat|[a-z]{0,8})",
        data in "[\\[\\]{}:,\"0-9a-z -]{0,64}",
    ) {
        let _ = parse_client_text(&format!(r#"{{"type":"{kind}","data":{data}}}"#));
    }
}
