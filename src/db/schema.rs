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
);
