//! API errors: the CLI's stable codes as JSON `{code, message, hint}` with an HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ice_core::{ErrorCode, Rejection};
use ice_runtime::RuntimeError;
use serde::Serialize;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// What was wrong with which input.
    pub message: String,
    /// Seq of the `TransitionRejected` event that recorded the refusal, when one was written.
    pub recorded_seq: Option<u64>,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `ICE-E0905`.
    pub code: String,
    /// What was wrong with which input.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// Seq of the `TransitionRejected` event recording the refusal, when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_seq: Option<u64>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), recorded_seq: None, retry_after: None }
    }

    /// The HTTP status for the code.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }

    /// The body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            hint: self.code.hint().to_owned(),
            recorded_seq: self.recorded_seq,
        }
    }
}

/// One table from code to status, so every endpoint answers a code the same way.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::Unauthenticated | C::TokenInvalid | C::TokenRevoked | C::TokenExpired => StatusCode::UNAUTHORIZED,
        C::RoleRequired
        | C::ActAsNotAllowed
        | C::ReservedPrincipal
        | C::OriginNotAuthorized
        | C::ApproverNotAuthorized
        | C::SandboxEscape
        | C::NotAllowlisted => StatusCode::FORBIDDEN,
        C::NotFound
        | C::UnknownRun
        | C::UnknownGrant
        | C::UnknownProposal
        | C::UnknownApproval
        | C::NoPermit
        | C::NoRoute
        | C::UnknownAction
        | C::NoEffector
        | C::UnknownSecret
        | C::UnknownMemoryItem => StatusCode::NOT_FOUND,
        C::IllegalTransition
        | C::RunTerminated
        | C::HeadConflict
        | C::PermitUsed
        | C::PermitExpired
        | C::PermitRevoked
        | C::ApprovalClosed
        | C::GrantNotRevocable
        | C::EffectConflict
        | C::SettleWhileLive
        | C::ResumeNotAllowed
        | C::NothingToRollBack
        | C::RetryElsewhere
        | C::OutcomeUnknown
        | C::ArgsMismatch
        | C::AlreadyInitialized
        | C::NoActivePolicy
        | C::ToolChanged
        | C::AgentRunning
        | C::MemoryNotActive => StatusCode::CONFLICT,
        C::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::Overloaded | C::StoreUnavailable | C::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
        C::EffectFailed | C::EffectLimit => StatusCode::BAD_GATEWAY,
        C::SchemaMismatch
        | C::AppendOnlyViolation
        | C::HashMismatch
        | C::BrokenLink
        | C::SequenceGap
        | C::TimeRegression
        | C::HeadMismatch
        | C::CheckpointInvalid
        | C::UntrustedKey
        | C::NoPinnedKey
        | C::UnsignedTail
        | C::LedgerCorrupt
        | C::WitnessMismatch
        | C::WitnessStateInvalid
        | C::NoCheckpoint
        | C::BadConfig => StatusCode::INTERNAL_SERVER_ERROR,
        // Everything else is a request the runtime understood and refused on its content.
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Rejected { rejection, record } => Self {
                code: rejection.code,
                message: rejection.message,
                recorded_seq: record.map(|r| r.seq.0),
                retry_after: None,
            },
            other => {
                let text = other.to_string();
                let message = match text.split_once(": ") {
                    Some((code, rest)) if code.starts_with("ICE-E") => rest.to_owned(),
                    _ => text,
                };
                Self::new(other.code(), message)
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        Self::new(r.code, r.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ice\""));
        }
        resp
    }
}
