//! Driver errors as store errors, and which of them are worth retrying.

use crate::Error;
use scylla::errors::{ExecutionError, PagerExecutionError, PrepareError, RequestAttemptError};

/// Whether a driver error is transient: timeouts, unavailable or overloaded
/// replicas, broken connections, an empty pool. Syntax, invalid requests,
/// authorisation and configuration errors are not.
pub fn is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        ExecutionError::PrepareError(e) => prepare_is_transient(e),
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        _ => false,
    }
}

/// [`is_transient`] for failed preparations.
pub fn prepare_is_transient(error: &PrepareError) -> bool {
    match error {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
        PrepareError::ConnectionPoolError(_) => true,
        _ => false,
    }
}

fn attempt_is_transient(attempt: &RequestAttemptError) -> bool {
    use scylla::errors::DbError as D;
    match attempt {
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            D::Unavailable { .. }
                | D::Overloaded
                | D::IsBootstrapping
                | D::ReadTimeout { .. }
                | D::WriteTimeout { .. }
                | D::ReadFailure { .. }
                | D::WriteFailure { .. }
                | D::TruncateError
                | D::ServerError
                | D::RateLimitReached { .. }
        ),
        RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId => true,
        _ => false,
    }
}

/// [`is_transient`] for failures to start a paged read.
pub(super) fn pager_is_transient(error: &PagerExecutionError) -> bool {
    match error {
        PagerExecutionError::PrepareError(e) => prepare_is_transient(e),
        PagerExecutionError::SerializationError(_) => false,
        _ => true,
    }
}

pub(super) fn scylla_err<E>(context: impl Into<String>, retryable: bool) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let context = context.into();
    move |source| Error::Scylla { context, retryable, source: Box::new(source) }
}

pub(super) fn exec_err(context: impl Into<String>) -> impl FnOnce(ExecutionError) -> Error {
    let context = context.into();
    move |source| Error::Scylla { context, retryable: is_transient(&source), source: Box::new(source) }
}

pub(super) fn poisoned() -> Error {
    Error::Unavailable("the prepared-statement cache lock is poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{DbError, WriteType};
    use scylla::statement::Consistency;
    use std::time::Duration;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "from the test".into()))
    }

    #[test]
    fn transient_errors_are_retryable() {
        for e in [
            db(DbError::Overloaded),
            db(DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            }),
            db(DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 }),
            ExecutionError::EmptyPlan,
            ExecutionError::RequestTimeout(Duration::from_secs(1)),
        ] {
            assert!(is_transient(&e), "{e}");
            assert!(exec_err("x")(e).is_retryable());
        }
        for e in [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
            ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(DbError::SyntaxError, "bad".into()),
            }),
        ] {
            assert!(!is_transient(&e), "{e}");
            assert!(!exec_err("x")(e).is_retryable());
        }
    }
}
