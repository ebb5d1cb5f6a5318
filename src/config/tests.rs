use super::*;

#[test]
fn defaults_match_the_design() {
    let s = Settings::defaults();
    assert_eq!(s.bind, "127.0.0.1:8080");
    assert_eq!(s.database_url, "sqlite://herald.db");
    assert_eq!(s.max_frame_bytes, 65_536);
    assert_eq!(s.max_sessions_per_user, 16);
    assert!(s.trusted_proxies.is_empty());
    assert!(s.validate().is_ok());
}

#[test]
fn heartbeat_request_is_clamped() {
    let s = Settings::defaults();
    assert_eq!(s.heartbeat_for(Some(1)), Duration::from_secs(5));
    assert_eq!(s.heartbeat_for(Some(1_000)), Duration::from_secs(120));
    assert_eq!(s.heartbeat_for(None), Duration::from_secs(25));
    assert_eq!(
        s.timeout_for(Duration::from_secs(120)),
        Duration::from_secs(240)
    );
}

#[test]
fn trusted_proxies_are_a_list_of_blocks() {
    let cli = Cli::parse_from(["herald", "--trusted-proxies", "10.0.0.0/8, ::1"]);
    let nets: Vec<String> = cli
        .settings
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
    assert!(Cli::try_parse_from(["herald", "--trusted-proxies", "nonsense"]).is_err());
}

#[test]
fn webhook_urls_are_a_comma_separated_list() {
    let cli = Cli::parse_from([
        "herald",
        "--webhook-url",
        "http://a.example/h,http://b.example/h",
        "--webhook-secret",
        "whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=",
    ]);
    assert_eq!(cli.settings.webhook_urls.len(), 2);
    assert!(cli.settings.validate().is_ok());
    assert_eq!(cli.settings.webhook_retry_base_ms, 1_000);
}

#[test]
fn token_subcommand_parses_groups() {
    let cli = Cli::parse_from(["herald", "token", "alice", "--groups", "a,b", "--ttl", "60"]);
    match cli.command {
        Some(Command::Token {
            user_id,
            groups,
            ttl,
        }) => {
            assert_eq!(user_id, "alice");
            assert_eq!(groups, vec!["a", "b"]);
            assert_eq!(ttl, 60);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn identity_flags_go_after_the_subcommand_like_every_other_flag() {
    let cli = Cli::try_parse_from([
        "herald",
        "serve",
        "--jwks-url",
        "https://idp.example/jwks",
        "--jwt-public-key",
        "/etc/herald/idp.pem",
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-audience",
        "herald",
        "--jwt-user-claim",
        "preferred_username",
        "--jwt-groups-claim",
        "realm_access.roles",
    ])
    .expect("identity flags after `serve`");
    assert!(matches!(cli.command, Some(Command::Serve { .. })));
    let s = cli.settings;
    assert_eq!(s.jwks_url.as_deref(), Some("https://idp.example/jwks"));
    assert_eq!(s.jwt_public_key.as_deref(), Some("/etc/herald/idp.pem"));
    assert_eq!(s.jwt_issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(s.jwt_audience.as_deref(), Some("herald"));
    assert_eq!(s.jwt_user_claim, "preferred_username");
    assert_eq!(s.jwt_groups_claim, "realm_access.roles");
}
