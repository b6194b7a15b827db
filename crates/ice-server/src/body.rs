//! Request bodies: read up to the configured size, UTF-8, parsed by the core's one untrusted-JSON parser (duplicate
//! members refused, nesting bounded), then into a typed request whose unknown fields are refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use ice_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::{Shared, body};

/// A strictly parsed JSON body. An empty body reads as `{}` so that endpoints whose fields are all optional can
/// be called without one.
pub struct Strict<T>(pub T);

/// Reads and parses a body as untrusted JSON.
pub async fn read_json(req: Request, limit: usize) -> Result<Value, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
        ApiError::new(ErrorCode::RequestTooLarge, format!("the request body is larger than {limit} bytes"))
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::new(ErrorCode::MalformedJson, format!("the request body is not UTF-8 (byte {})", e.valid_up_to()))
    })?;
    let v = ice_core::canonical::parse_untrusted(text)
        .map_err(|r| ApiError::new(r.code, format!("the request body is not acceptable JSON: {}", r.message)))?;
    let max = ice_core::canonical::MAX_DEPTH;
    if depth(&v) > max {
        return Err(ApiError::new(
            ErrorCode::BadPayloadStructure,
            format!("the request body nests deeper than {max} levels"),
        ));
    }
    Ok(v)
}

/// Nesting depth, without recursion (the parser already bounds it, but a walk should not depend on that).
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Converts parsed JSON into a request type (which says `deny_unknown_fields`).
pub fn typed<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::new(ErrorCode::BadPayloadStructure, format!("request body: {e}")))
}

impl<T: DeserializeOwned> FromRequest<Shared> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Self::Rejection> {
        let v = body::read_json(req, state.cfg.max_body_bytes).await?;
        Ok(Self(typed(v)?))
    }
}

/// The parsed body as JSON (for endpoints whose strict parser lives in the runtime, like proposals).
pub struct RawJson(pub Value);

impl FromRequest<Shared> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Self::Rejection> {
        Ok(Self(body::read_json(req, state.cfg.max_body_bytes).await?))
    }
}

/// Query parameters, refused with a coded error (unknown parameters too: the types say `deny_unknown_fields`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::new(ErrorCode::BadArgument, format!("query string: {}", e.body_text())))
    }
}
