//! Request extractors: `AdminAuth` for the admin bearer token and `UserAuth`
//! for a user's JWT.

use crate::auth::{admin_token_matches, Claims, TokenError};
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::future::{ready, Ready};

pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::Internal("application state missing".into()))
}

/// Proof that the request carried the admin token.
pub struct AdminAuth;

impl FromRequest for AdminAuth {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(req).and_then(|state| match bearer(req) {
            Some(token) if admin_token_matches(token, &state.admin_token) => Ok(AdminAuth),
            Some(_) => Err(AppError::Unauthorized(
                "the admin token is not valid".into(),
            )),
            None => Err(AppError::Unauthorized(
                "send the admin token as Authorization: Bearer <token>".into(),
            )),
        }))
    }
}

/// The user a request's JWT names.
pub struct UserAuth(pub Claims);

impl FromRequest for UserAuth {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = state(req).and_then(|state| {
            let token = bearer(req).ok_or_else(|| {
                AppError::Unauthorized("send your token as Authorization: Bearer <token>".into())
            })?;
            Ok((state.clone(), token.to_string()))
        });
        Box::pin(async move {
            let (state, token) = found?;
            state.keys.ensure_key(&token).await;
            state
                .keys
                .verify(&token)
                .map(UserAuth)
                .map_err(|e| match e {
                    TokenError::Expired => AppError::Unauthorized("the token has expired".into()),
                    other => AppError::Unauthorized(other.to_string()),
                })
        })
    }
}
