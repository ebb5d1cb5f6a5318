//! Path segments the REST handlers share.

use crate::domain::AnnouncementId;
use crate::error::AppError;

/// An announcement id from the path; anything that is not one answers 404,
/// as an id that does not exist would.
pub fn announcement_id(raw: &str) -> Result<AnnouncementId, AppError> {
    raw.parse()
        .map(AnnouncementId)
        .map_err(|_| AppError::NotFound(format!("announcement {raw}")))
}
