//! The query layer's errors. Each says what the user asked that cannot be done, so the
//! portal and the SQL endpoints can pass it on as it is.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or plan, names something unknown, or fails while running.
    #[error("{message}")]
    Sql { message: String },
    /// The statement would create, change or read something outside the fleet's tables.
    #[error(
        "statement refused: {reason}; analysts may run queries (SELECT, WITH, EXPLAIN, SHOW) only"
    )]
    Refused { reason: String },
    #[error(
        "query stopped after {seconds} s, its time limit; narrow the time range or aggregate more"
    )]
    Timeout { seconds: u64 },
    #[error("result has more than {limit} {unit}; add a LIMIT or aggregate")]
    ResultTooLarge { limit: u64, unit: &'static str },
    #[error("query memory limit reached: {message}")]
    OutOfMemory { message: String },
    /// A request's parameters do not make sense (an empty range, an unknown unit).
    #[error("{message}")]
    BadRequest { message: String },
    /// Absent, or outside what the principal may see: the two are not told apart.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A standing sign-in (a Postgres connection, a Flight SQL token) whose user was
    /// deactivated, changed password or lost SQL access since.
    #[error(
        "the sign-in no longer holds (user deactivated, password changed or SQL access \
         withdrawn): sign in again"
    )]
    SignInLapsed,
    #[error(transparent)]
    Engine(#[from] sunfleet_engine::Error),
    #[error("query runtime: {message}")]
    Runtime { message: String },
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        match error.find_root() {
            DataFusionError::ResourcesExhausted(message) => QueryError::OutOfMemory {
                message: message.clone(),
            },
            DataFusionError::External(inner) => {
                match inner.downcast_ref::<sunfleet_engine::Error>() {
                    Some(engine) => QueryError::Sql {
                        message: format!("reading stored data: {engine}"),
                    },
                    None => QueryError::Sql {
                        message: inner.to_string(),
                    },
                }
            }
            DataFusionError::SQL(parse, _) => QueryError::Sql {
                message: parse.to_string(),
            },
            root => QueryError::Sql {
                message: root.message().to_string(),
            },
        }
    }
}
