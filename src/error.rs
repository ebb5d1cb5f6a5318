//! One error type for the REST API, rendered as
//! `{"error":{"code":"snake_case","message":"...","field":"...","details":[..]}}`
//! (`ErrorBody`, which the API document shows).

use crate::db::DbError;
use crate::domain::FieldError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("the database is unavailable, try again shortly")]
    Unavailable(#[source] DbError),
    #[error("internal error")]
    Internal(String),
}

/// Every REST error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `unauthorized`, `not_found`,
    /// `validation_failed`, `invalid_query`, `not_scheduled`.
    pub code: &'static str,
    /// For people; may change.
    pub message: String,
    /// The request field at fault, when there is one (the first, on 422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every refused field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldError>>,
}

impl AppError {
    pub fn bad_request(
        code: &'static str,
        message: impl Into<String>,
        field: Option<&str>,
    ) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { code, .. } | AppError::BadRequest { code, .. } => code,
            AppError::Validation(_) => "validation_failed",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::TooManyRequests(_) => "too_many_requests",
            AppError::Unavailable(_) => "database_unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Blocking(msg) => AppError::Internal(msg),
            // A query error that is not about reaching the database is a bug
            // or a constraint we did not expect; anything else is an outage.
            DbError::Query(diesel::result::Error::DatabaseError(kind, info))
                if !matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection)
                    && !info.message().contains("locked") =>
            {
                AppError::Internal(info.message().to_string())
            }
            other => AppError::Unavailable(other),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "request failed: database unavailable")
            }
            AppError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            _ => {}
        }
        let mut error = ErrorDetail {
            code: self.code(),
            message: self.to_string(),
            field: None,
            details: None,
        };
        match self {
            AppError::BadRequest { field, .. } => error.field = field.clone(),
            AppError::Validation(fields) => {
                if let Some(first) = fields.first() {
                    error.field = Some(first.field.clone());
                    error.message = format!("{} {}", first.field, first.message);
                }
                error.details = Some(fields.clone());
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, AppError::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorBody { error })
    }
}
