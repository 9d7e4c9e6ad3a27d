//! The one error type of the HTTP layer and how it becomes a response: pages get a small HTML
//! page, the JSON API a `{"ok":false,"error":…,"field":…}` object. Internal causes are
//! logged, never sent.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use crm_model::ValidationError;
use crm_store::StoreError;

/// What can go wrong handling a request.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    /// The caller's input: nothing was stored. `field` names the field at fault, if any.
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("this server needs its access token")]
    Unauthorized,
    #[error("the replica failed: {0}")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    pub(crate) fn invalid(message: impl Into<String>, field: Option<&str>) -> Self {
        WebError::Invalid {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Store(_) | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a user may see: internal causes are replaced by a generic line.
    pub(crate) fn public_message(&self) -> String {
        match self {
            WebError::Store(e) => {
                tracing::error!(error = %e, "replica error");
                "the replica could not complete the request; see the server log".into()
            }
            WebError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "internal error; see the server log".into()
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            WebError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// The field a validation error is about.
pub(crate) fn validation_field(e: &ValidationError) -> Option<&str> {
    match e {
        ValidationError::UnknownField { field, .. }
        | ValidationError::InvalidValue { field, .. }
        | ValidationError::Required { field, .. }
        | ValidationError::Immutable { field }
        | ValidationError::AppendOnly { field }
        | ValidationError::TextTooLong { field, .. } => Some(field),
        ValidationError::InvalidTag { .. } => Some("tags"),
        ValidationError::InvalidCustomName { .. } | ValidationError::MissingEquals(_) => None,
    }
}

impl From<ValidationError> for WebError {
    fn from(e: ValidationError) -> Self {
        WebError::Invalid {
            message: e.to_string(),
            field: validation_field(&e).map(str::to_string),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::NoRejectedEdit(_) => {
                WebError::NotFound(e.to_string())
            }
            StoreError::Invalid(v) => v.into(),
            StoreError::Document { ref source, .. } => match &**source {
                crm_model::DocError::Invalid(v) => v.clone().into(),
                _ => WebError::Store(e),
            },
            StoreError::MissingReference { ref field, .. }
            | StoreError::WrongReference { ref field, .. }
            | StoreError::NoConflict { ref field, .. } => WebError::Invalid {
                field: Some(field.clone()),
                message: e.to_string(),
            },
            StoreError::WrongKind { .. } => WebError::invalid(e.to_string(), None),
            // Not the request's fault, but the user must see why (without the file's path).
            StoreError::ReadOnly { why, .. } => WebError::Forbidden(format!(
                "{why}: it can be read but not written; nothing was changed"
            )),
            // Any other mistake in the request (an unknown report, a step the record's state
            // does not allow, …) is the caller's, not the replica's.
            other if other.is_invalid_input() => WebError::invalid(other.to_string(), None),
            other => WebError::Store(other),
        }
    }
}

impl From<tokio::task::JoinError> for WebError {
    fn from(e: tokio::task::JoinError) -> Self {
        WebError::Internal(format!("a request's worker failed: {e}"))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let page = maud::html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (status.as_u16()) " · CRM" }
                    link rel="stylesheet" href="/assets/app.css";
                }
                body.error-page {
                    main.error-box data-testid="error-page" {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p data-testid="error-message" { (message) }
                        p { a href="/" { "Back to the dashboard" } }
                    }
                }
            }
        };
        (status, Html(page.into_string())).into_response()
    }
}

/// The JSON API's error: the same errors as JSON.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) WebError);

macro_rules! api_error_from {
    ($($t:ty),*) => {
        $(impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError(e.into())
            }
        })*
    };
}

api_error_from!(
    WebError,
    StoreError,
    ValidationError,
    tokio::task::JoinError
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = serde_json::json!({
            "ok": false,
            "error": self.0.public_message(),
            "field": self.0.field(),
        });
        (status, axum::Json(body)).into_response()
    }
}
