//! Draft and patch validation on their own: JSON in, field errors out.

use super::*;

fn input(json: serde_json::Value) -> CreateInput {
    serde_json::from_value(json).expect("test input parses")
}

#[test]
fn minimal_draft_publishes_now_as_info() {
    let d = AnnouncementDraft::validate(
        &input(serde_json::json!({"title":" Hi ","content":"x","audience":{"all":true}})),
        &DraftLimits::default(),
        1_000,
    )
    .expect("valid");
    assert_eq!(d.title, "Hi");
    assert_eq!(d.level, Level::Info);
    assert_eq!(d.publish_at, 1_000);
    assert_eq!(d.audience, Audience::All);
}

#[test]
fn every_bad_field_is_reported() {
    let errors = AnnouncementDraft::validate(
        &input(serde_json::json!({
            "title": "", "content": "x".repeat(20_001), "level": "loud",
            "link": "javascript:alert(1)", "audience": {"users": []},
            "publish_at": "soon"
        })),
        &DraftLimits::default(),
        0,
    )
    .expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "title",
            "content",
            "level",
            "link",
            "audience.users",
            "publish_at"
        ]
    );
}

#[test]
fn audience_must_name_one_kind_within_limits() {
    let limits = DraftLimits {
        max_recipients: 2,
        ..DraftLimits::default()
    };
    let two_kinds = input(serde_json::json!({"title":"t","content":"c",
        "audience":{"all":true,"users":["a"]}}));
    assert!(AnnouncementDraft::validate(&two_kinds, &limits, 0).is_err());
    let too_many = input(serde_json::json!({"title":"t","content":"c",
        "audience":{"users":["a","b","c"]}}));
    let errors = AnnouncementDraft::validate(&too_many, &limits, 0).expect_err("too many");
    assert_eq!(errors[0].field, "audience.users");
    let dupes = input(serde_json::json!({"title":"t","content":"c",
        "audience":{"groups":["b","a","b"]}}));
    let d = AnnouncementDraft::validate(&dupes, &limits, 0).expect("dupes collapse");
    assert_eq!(d.audience, Audience::Groups(vec!["a".into(), "b".into()]));
}

#[test]
fn expiry_must_follow_publish_time() {
    let bad = input(
        serde_json::json!({"title":"t","content":"c","audience":{"all":true},
        "publish_at":"2030-01-01T00:00:00Z","expires_at":"2029-01-01T00:00:00Z"}),
    );
    let errors = AnnouncementDraft::validate(&bad, &DraftLimits::default(), 0).expect_err("bad");
    assert_eq!(errors[0].field, "expires_at");
}

#[test]
fn nul_is_refused_in_every_text_field() {
    let nul = "a\u{0}b";
    let cases = [
        (serde_json::json!({"title": nul}), "title"),
        (serde_json::json!({"content": nul}), "content"),
        (serde_json::json!({"link": "/a\u{0}"}), "link"),
        (
            serde_json::json!({"audience": {"users": [nul]}}),
            "audience.users",
        ),
        (
            serde_json::json!({"audience": {"groups": ["ops", nul]}}),
            "audience.groups",
        ),
    ];
    for (change, field) in cases {
        let mut json = serde_json::json!({"title": "t", "content": "c", "audience": {"all": true}});
        for (k, v) in change.as_object().expect("object") {
            json[k] = v.clone();
        }
        let errors = AnnouncementDraft::validate(&input(json), &DraftLimits::default(), 0)
            .expect_err("NUL refused");
        assert_eq!(errors[0].field, field);
        let patch: PatchInput = serde_json::from_value(change).expect("patch parses");
        let errors = AnnouncementPatch::validate(&patch, &DraftLimits::default(), 0)
            .expect_err("NUL refused in a patch");
        assert_eq!(errors[0].field, field);
    }
    assert_eq!(
        token_subject(" alice ", &["ops".into()]),
        Ok("alice".into())
    );
    let fields = |r: Result<String, Vec<FieldError>>| -> Vec<String> {
        r.expect_err("refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    assert_eq!(fields(token_subject(nul, &[])), ["user_id"]);
    assert_eq!(fields(token_subject("alice", &[nul.into()])), ["groups"]);
}

fn link_errors(link: &str) -> Vec<FieldError> {
    let json = serde_json::json!({"title": "t", "content": "c", "audience": {"all": true},
        "link": link});
    AnnouncementDraft::validate(&input(json), &DraftLimits::default(), 0)
        .err()
        .unwrap_or_default()
}

#[test]
fn links_that_browsers_read_as_another_site_are_refused() {
    for link in [
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\u{1}/evil.example",
        "/\u{7f}evil",
        "/ /evil.example",
        "/\u{a0}/evil.example",
        "https://good.example\\@evil.example",
        "javascript:alert(1)",
    ] {
        let errors = link_errors(link);
        assert_eq!(errors.len(), 1, "{link:?} was accepted");
        assert_eq!(errors[0].field, "link");
    }
}

#[test]
fn paths_and_http_urls_are_links() {
    for link in [
        "/news/1",
        "/search?q=a%20b#top",
        " /padded ",
        "https://example.com/a?b=c",
        "http://example.com",
    ] {
        assert_eq!(link_errors(link), [], "{link:?} was refused");
    }
}

#[test]
fn patched_times_are_checked_against_the_stored_ones() {
    let (publish_at, expires_at) = (1_000, Some(2_000));
    let patch = |publish: Option<i64>, expires: Option<Option<i64>>| AnnouncementPatch {
        publish_at: publish,
        expires_at: expires,
        ..AnnouncementPatch::default()
    };
    let field = |p: AnnouncementPatch| {
        p.check_times(publish_at, expires_at)
            .map_err(|e| e.field)
            .err()
    };
    assert_eq!(field(patch(None, None)), None);
    assert_eq!(field(patch(Some(1_500), None)), None);
    assert_eq!(field(patch(None, Some(None))), None);
    assert_eq!(field(patch(Some(5_000), Some(None))), None);
    assert_eq!(
        field(patch(None, Some(Some(1_000)))),
        Some("expires_at".into())
    );
    assert_eq!(field(patch(Some(2_000), None)), Some("publish_at".into()));
    assert_eq!(
        field(patch(Some(3_000), Some(Some(2_500)))),
        Some("expires_at".into())
    );
    let broken = AnnouncementPatch::default().check_times(2_000, Some(2_000));
    assert_eq!(broken.map_err(|e| e.field), Err("expires_at".into()));
}
