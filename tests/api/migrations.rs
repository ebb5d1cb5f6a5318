//! The embedded migrations go up, down and up again on both backends, and
//! the schema works after the round trip.

use crate::helpers::*;
use diesel_migrations::MigrationHarness;
use herald::db::{self, DbConn, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

both_backends!(migrations_go_up_down_and_up_again);
async fn migrations_go_up_down_and_up_again() {
    let test_db = TestDb::new();
    let pool = db::connect(&test_db.url, 1, 5_000).expect("connect and migrate up");
    let mut conn = pool.get().expect("a connection");
    let migrations = match &*conn {
        DbConn::Pg(_) => POSTGRES_MIGRATIONS,
        DbConn::Sqlite(_) => SQLITE_MIGRATIONS,
    };
    let reverted = conn
        .revert_all_migrations(migrations)
        .expect("every migration goes down");
    assert!(!reverted.is_empty());
    assert!(
        db::timeline::latest_cursor(&mut conn).is_err(),
        "the tables are gone after down"
    );
    db::migrate(&mut conn).expect("and up again");
    assert_eq!(
        db::timeline::latest_cursor(&mut conn).expect("the schema works"),
        herald::domain::Cursor(0)
    );
    drop(conn);
    drop(pool);
}
