//! The one place that maps errors to a status and a `{"detail": ...}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Error;

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_)
            | Error::AddressRequired
            | Error::FieldTooLong { .. }
            | Error::SignInFieldsRequired
            | Error::InvalidHex
            | Error::UnsupportedAlgorithm(_)
            | Error::MalformedWalletInput { .. }
            | Error::AddressMismatch
            | Error::MalformedAddress { .. }
            | Error::ChainIdNotAllowed(_)
            | Error::MalformedSignature { .. }
            | Error::MessageRequired(_)
            | Error::RefreshRequired
            | Error::FieldRequired(_)
            | Error::JtiRequired
            | Error::ExpInPast => StatusCode::BAD_REQUEST,
            Error::InvalidChallenge
            | Error::MessageMismatch
            | Error::ContractWalletUnsupported
            | Error::SignatureFailed(_)
            | Error::RefreshExpired
            | Error::RefreshInvalid(_)
            | Error::InvalidCredentials
            | Error::FleetSecretInvalid
            | Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::LoginDisabled | Error::Forbidden | Error::RoleNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Error::FleetDisabled => StatusCode::NOT_FOUND,
            Error::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            Error::TooManyAttempts { .. } | Error::TooManyRequests { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::ChallengesFull { .. } | Error::Overloaded | Error::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Error::TooManyAttempts { retry_after_secs }
            | Error::TooManyRequests { retry_after_secs }
            | Error::ChallengesFull { retry_after_secs } => Some((*retry_after_secs).max(1)),
            Error::Overloaded | Error::Unavailable(_) => Some(1),
            _ => None,
        }
    }
}

/// A `{"detail": ...}` response with `status`.
pub(crate) fn detail(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({ "detail": detail });
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Error::Internal(cause) => tracing::error!(%cause, "internal error"),
            Error::Unavailable(cause) => tracing::warn!(%cause, "store unavailable"),
            _ => {}
        }
        let mut resp = detail(status, &self.to_string());
        // For the metrics layer's `wallet_auth_shed_total{reason}`.
        if let Some(reason) = crate::ops::ShedReason::of(&self) {
            resp.extensions_mut().insert(reason);
        }
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED && matches!(self, Error::Unauthorized(_)) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
