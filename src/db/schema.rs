//! Tables as Diesel sees them; written by hand with types both backends share.

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    counters (name) {
        name -> Text,
        value -> BigInt,
    }
}

diesel::table! {
    announcements (id) {
        id -> BigInt,
        title -> Text,
        content -> Text,
        level -> Text,
        link -> Nullable<Text>,
        audience -> Text,
        status -> Text,
        publish_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        published_at -> Nullable<BigInt>,
        retracted_at -> Nullable<BigInt>,
        publish_cursor -> Nullable<BigInt>,
        targeted -> Nullable<BigInt>,
        online_at_publish -> Nullable<BigInt>,
        requires_confirmation -> Bool,
    }
}

diesel::table! {
    announcement_targets (announcement_id, kind, value) {
        announcement_id -> BigInt,
        kind -> Text,
        value -> Text,
    }
}

diesel::table! {
    receipts (announcement_id, user_id) {
        announcement_id -> BigInt,
        user_id -> Text,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
        confirmed_at -> Nullable<BigInt>,
        archived_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    known_users (user_id) {
        user_id -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    user_groups (user_id, group_name) {
        user_id -> Text,
        group_name -> Text,
    }
}

diesel::table! {
    webhook_announcements (announcement_id) {
        announcement_id -> BigInt,
        last_seq -> BigInt,
        expiry_due -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_outbox (id) {
        id -> BigInt,
        event_id -> Text,
        event_type -> Text,
        announcement_id -> BigInt,
        seq -> BigInt,
        endpoint -> Text,
        payload -> Text,
        status -> Text,
        attempts -> BigInt,
        created_at -> BigInt,
        give_up_at -> BigInt,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        claim_token -> Nullable<Text>,
        last_attempt_at -> Nullable<BigInt>,
        last_status -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(announcement_targets -> announcements (announcement_id));
diesel::joinable!(receipts -> announcements (announcement_id));

diesel::allow_tables_to_appear_in_same_query!(
    settings,
    counters,
    announcements,
    announcement_targets,
    receipts,
    known_users,
    user_groups,
    webhook_announcements,
    webhook_outbox,
);
