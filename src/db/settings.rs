//! Generated secrets kept in the database so every node and every restart
//! agree on them.

use super::schema::settings as s;
use super::{DbConn, DbError};
use diesel::prelude::*;

pub const JWT_SECRET: &str = "jwt_secret";
pub const ADMIN_TOKEN: &str = "admin_token";

/// Returns the stored value for `key`, storing `make()` first when there is
/// none. The flag says whether this call created it. Safe when several nodes
/// start at once: the first insert wins and everyone reads the winner.
pub fn get_or_create(
    conn: &mut DbConn,
    key: &str,
    make: impl FnOnce() -> String,
) -> Result<(String, bool), DbError> {
    let candidate = make();
    let inserted =
        crate::insert_ignore!(conn, s::table, (s::key.eq(key), s::value.eq(&candidate)))?;
    let value = s::table.find(key).select(s::value).first(conn)?;
    Ok((value, inserted == 1))
}
