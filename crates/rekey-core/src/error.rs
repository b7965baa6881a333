//! The one error type of the domain. Each error has a kind (which every face maps to its own
//! status: gRPC code, HTTP status, Connect code), a stable id and a human text. Internal causes
//! are logged where they happen and never carried to the caller.

use std::borrow::Cow;
use std::fmt;

use crate::policy::password::{PasswordPolicy, PasswordRule};

/// What went wrong, in terms every wire form can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    Unavailable,
    DeadlineExceeded,
    Unauthenticated,
    Unimplemented,
    Internal,
}

impl ErrorKind {
    /// The gRPC status code number.
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 3,
            ErrorKind::DeadlineExceeded => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::AlreadyExists => 6,
            ErrorKind::PermissionDenied => 7,
            ErrorKind::ResourceExhausted => 8,
            ErrorKind::FailedPrecondition => 9,
            ErrorKind::Aborted => 10,
            ErrorKind::Unimplemented => 12,
            ErrorKind::Internal => 13,
            ErrorKind::Unavailable => 14,
            ErrorKind::Unauthenticated => 16,
        }
    }

    /// The HTTP status ZITADEL's gateway uses for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Aborted => 409,
            ErrorKind::ResourceExhausted => 429,
            ErrorKind::Internal => 500,
            ErrorKind::Unimplemented => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::DeadlineExceeded => 504,
        }
    }

    /// The Connect protocol's code string.
    pub fn connect_code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A domain error: kind, stable id (e.g. `COMMAND-SAF4f`) and text (e.g. "User could not be found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub id: &'static str,
    pub text: Cow<'static, str>,
    /// Seconds until a rate-limited caller may try again.
    pub retry_after: Option<u64>,
    /// More than the wire may say, for Rekey's own hosted pages; API faces ignore it, so
    /// their output never depends on it.
    pub hint: Option<ErrorHint>,
}

/// What a hosted page may tell a person beyond the error's kind, id and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorHint {
    /// "Code is invalid" because the code already had its last attempt: it can never match
    /// again (the API keeps saying "Code is invalid", SPEC §7).
    CodeUsedUp,
    /// The password policy that refused the new password and every rule it breaks, in the
    /// policy's order.
    PasswordRules {
        policy: PasswordPolicy,
        broken: Vec<PasswordRule>,
    },
}

impl Error {
    pub fn new(kind: ErrorKind, id: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            id,
            text: text.into(),
            retry_after: None,
            hint: None,
        }
    }

    /// The same error with a hint for hosted pages (not shown by the API faces).
    pub fn with_hint(mut self, hint: ErrorHint) -> Self {
        self.hint = Some(hint);
        self
    }

    /// `"<text> (<ID>)"`, the message every face shows.
    pub fn message(&self) -> String {
        format!("{} ({})", self.text, self.id)
    }

    pub fn invalid(id: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidArgument, id, text)
    }

    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "REKEY-Int01", "Internal error")
    }

    pub fn unavailable() -> Self {
        Self::new(ErrorKind::Unavailable, "REKEY-Unav1", "Service unavailable")
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "AUTH-7fs1e",
            "Authentication required",
        )
    }

    pub fn permission_denied() -> Self {
        Self::new(ErrorKind::PermissionDenied, "AUTHZ-HKJD33", "No permission")
    }

    /// A user that does not exist, is deleted, or is not the caller's to see (NOT_FOUND): the
    /// user v2 API's answer (every wire form, and the setup API's `GetUserByID`), and what any
    /// face gets when a flow's store change finds no user (the CLI, F5, the operator's retry).
    pub fn user_not_found() -> Self {
        Self::new(
            ErrorKind::NotFound,
            "COMMAND-SAF4f",
            "User could not be found",
        )
    }

    /// A user not found in the organization in context (FAILED_PRECONDITION): how the
    /// management v1 API (`SetHumanPassword`, `SetHumanInitialPassword`,
    /// `SendHumanResetPasswordNotification`) answers for a user outside that organization.
    pub fn user_not_in_org() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "COMMAND-Hj9ds",
            "User could not be found",
        )
    }

    pub fn code_not_found() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "COMMAND-2M9fs",
            "Code not found",
        )
    }

    pub fn code_expired() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "CODE-QvUQ4P",
            "Code is expired",
        )
    }

    pub fn code_invalid() -> Self {
        Self::new(ErrorKind::InvalidArgument, "CODE-woT0xc", "Code is invalid")
    }

    pub fn url_template_syntax() -> Self {
        Self::invalid("DOMAIN-oGh5e", "URL Template is invalid")
    }

    pub fn url_template_field() -> Self {
        Self::invalid("DOMAIN-ieYa7", "URL Template is invalid")
    }

    pub fn password_invalid() -> Self {
        Self::invalid("COMMAND-3M0fs", "Password is invalid")
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                ErrorKind::ResourceExhausted,
                "REKEY-Rate1",
                "Too many requests",
            )
        }
    }

    pub fn hash_pool_busy() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorKind::ResourceExhausted,
                "REKEY-Hash1",
                "Too many password operations in progress",
            )
        }
    }

    pub fn user_inactive() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "REKEY-UsIna",
            "User is inactive",
        )
    }

    pub fn email_ambiguous() -> Self {
        Self::new(
            ErrorKind::Aborted,
            "REKEY-EmAmb",
            "The email belongs to users in several tenants",
        )
    }

    pub fn user_not_found_by_email() -> Self {
        Self::new(
            ErrorKind::NotFound,
            "REKEY-UsNF1",
            "User could not be found",
        )
    }

    pub fn user_locked() -> Self {
        Self::new(
            ErrorKind::FailedPrecondition,
            "REKEY-UsLck",
            "User is locked",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
