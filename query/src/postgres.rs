//! The Postgres wire protocol in front of [`QueryEngine`], so `psql`, psycopg, JDBC and
//! BI tools can query the fleet.
//!
//! - **Sign-in**: every connection signs in with a registry user's e-mail and password
//!   (checked with argon2, as the portal does); there is no anonymous access. The password
//!   travels as the protocol's cleartext message, so with TLS configured the server refuses
//!   unencrypted connections (and never falls back to plaintext when TLS cannot start).
//! - **Per-principal session**: each statement is planned in a session built for the
//!   signed-in user's scope at that moment (grants expire), so one connection never sees
//!   another's rows and a revoked grant takes effect at the next statement. A user
//!   deactivated, with a changed password or without SQL any more is refused from the next
//!   statement on ([`SqlSignIn`]); failed sign-ins count toward the portal's limits.
//! - **Read-only**: what [`QueryEngine::plan`] refuses is refused here too. `BEGIN`,
//!   `COMMIT`, `ROLLBACK` and a few client settings (`SET application_name`, …) are
//!   accepted, since drivers send them, and change nothing.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::parser::DFParser;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::process_socket;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use sunfleet_engine::registry::StandingSignIn;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::PlannedQuery;
use crate::sql_sign_in::{SignInRefused, SqlSignIn};
use crate::{QueryEngine, QueryError, Scope, SqlAnswer};

/// Where and how the Postgres endpoint listens.
#[derive(Clone)]
pub struct PostgresConfig {
    pub listen: SocketAddr,
    /// With TLS, unencrypted connections are refused.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The running endpoint. [`PostgresServer::shutdown`] stops accepting and closes sessions.
pub struct PostgresServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl PostgresServer {
    pub async fn start(
        config: PostgresConfig,
        engine: Arc<QueryEngine>,
        sign_in: Arc<SqlSignIn>,
    ) -> Result<Self, QueryError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| QueryError::Runtime {
                message: format!("binding the Postgres endpoint to {}: {e}", config.listen),
            })?;
        let local_addr = listener.local_addr().map_err(|e| QueryError::Runtime {
            message: e.to_string(),
        })?;
        let tls = config.tls.map(|tls| {
            let mut tls = (*tls).clone();
            tls.alpn_protocols = vec![b"postgresql".to_vec()];
            TlsAcceptor::from(Arc::new(tls))
        });
        let handlers = Arc::new(Handlers {
            startup: Arc::new(SignIn {
                sign_in: Arc::clone(&sign_in),
                tls_required: tls.is_some(),
                parameters: server_parameters(),
            }),
            sql: Arc::new(SqlService {
                parser: Arc::new(StatementParser {
                    engine: Arc::clone(&engine),
                    sign_in,
                }),
                engine,
            }),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, tls, handlers, stop_rx));
        Ok(Self {
            local_addr,
            stop,
            accept,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let (tls, handlers) = (tls.clone(), Arc::clone(&handlers));
                    sessions.spawn(async move {
                        if let Err(error) = process_socket(socket, tls, handlers).await {
                            tracing::debug!(%peer, %error, "Postgres session ended with an error");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "accepting a Postgres connection"),
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!("16.6 (Sunfleet {})", env!("CARGO_PKG_VERSION"));
    parameters.is_superuser = false;
    parameters.default_transaction_read_only = true;
    parameters
}

struct Handlers {
    startup: Arc<SignIn>,
    sql: Arc<SqlService>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.sql)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.sql)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// The user a connection signed in as (kept in the connection's session extensions).
struct SignedIn(StandingSignIn);

/// Password sign-in against the registry's users.
struct SignIn {
    sign_in: Arc<SqlSignIn>,
    tls_required: bool,
    parameters: DefaultServerParameterProvider,
}

fn user_error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for SignIn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_required && !client.is_secure() {
                    return Err(user_error(
                        "FATAL",
                        "28000",
                        "this server accepts encrypted connections only: connect with sslmode=require",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?.password;
                let email = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let peer = client.socket_addr();
                let signed_in = match self
                    .sign_in
                    .sign_in(&email, &password, peer.ip(), "Postgres")
                    .await
                {
                    Ok(signed_in) => signed_in,
                    Err(refused) => {
                        tracing::info!(%peer, %refused, "Postgres sign-in refused");
                        let code = match &refused {
                            SignInRefused::WrongCredentials { .. } => "28P01",
                            SignInRefused::Throttled { .. } => "53400",
                            SignInRefused::NoSqlAccess { .. } => "28000",
                            SignInRefused::Query(_) => "XX000",
                        };
                        return Err(user_error("FATAL", code, refused.to_string()));
                    }
                };
                client.session_extensions().insert(SignedIn(signed_in));
                let (pid, secret_key) = RandomPidSecretKeyGenerator::default().generate(client);
                client.set_pid_and_secret_key(pid, secret_key);
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A statement as the extended protocol keeps it between Parse and Execute.
#[derive(Clone, Debug)]
pub enum Prepared {
    Query(Box<PlannedQuery>),
    Session(SessionCommand),
}

/// Statements drivers send that have nothing to do in a read-only session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SessionCommand {
    Begin,
    Commit,
    Rollback,
    Set,
}

impl SessionCommand {
    /// Recognises `BEGIN`, `COMMIT`, `ROLLBACK` (and their synonyms) and `SET` of the
    /// client settings drivers send on connect. Everything else goes to the planner.
    fn recognise(sql: &str) -> Option<Self> {
        let words: Vec<String> = sql
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let first = words.first().map(String::as_str)?;
        match first {
            "begin" | "start" => Some(SessionCommand::Begin),
            "commit" | "end" => Some(SessionCommand::Commit),
            "rollback" | "abort" => Some(SessionCommand::Rollback),
            "set" => {
                let name = words
                    .iter()
                    .skip(1)
                    .find(|w| !matches!(w.as_str(), "session" | "local"))?;
                let name = name.split('=').next().unwrap_or_default();
                matches!(
                    name,
                    "application_name" | "extra_float_digits" | "client_min_messages"
                )
                .then_some(SessionCommand::Set)
            }
            _ => None,
        }
    }

    fn response(self) -> Response {
        match self {
            SessionCommand::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            SessionCommand::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            SessionCommand::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            SessionCommand::Set => Response::Execution(Tag::new("SET")),
        }
    }
}

/// Runs statements for the signed-in user.
struct SqlService {
    engine: Arc<QueryEngine>,
    parser: Arc<StatementParser>,
}

/// Plans statements in the signed-in user's scope (for both protocols; the extended
/// protocol keeps the plan between Parse and Execute).
struct StatementParser {
    engine: Arc<QueryEngine>,
    sign_in: Arc<SqlSignIn>,
}

impl StatementParser {
    fn scope<C: ClientInfo>(&self, client: &C) -> PgWireResult<Scope> {
        let user = client
            .session_extensions()
            .get::<SignedIn>()
            .ok_or_else(|| user_error("FATAL", "28000", "not signed in"))?;
        self.sign_in.scope(&user.0).map_err(query_error)
    }

    async fn prepare(&self, scope: &Scope, sql: &str) -> PgWireResult<Prepared> {
        if let Some(command) = SessionCommand::recognise(sql) {
            return Ok(Prepared::Session(command));
        }
        let planned = self.engine.plan(scope, sql).await.map_err(query_error)?;
        Ok(Prepared::Query(Box::new(planned)))
    }
}

/// The Postgres error for a query error (SQLSTATE codes as Postgres uses them).
fn query_error(error: QueryError) -> PgWireError {
    let code = match &error {
        QueryError::Sql { .. } | QueryError::BadRequest { .. } => "42000",
        QueryError::Refused { .. } => "42501",
        QueryError::SignInLapsed => "28000",
        QueryError::NotFound { .. } => "42P01",
        QueryError::Timeout { .. } => "57014",
        QueryError::ResultTooLarge { .. } => "54000",
        QueryError::OutOfMemory { .. } => "53200",
        QueryError::Engine(_) | QueryError::Runtime { .. } => "XX000",
    };
    user_error("ERROR", code, error.to_string())
}

fn answer_response(answer: SqlAnswer, format: &Format) -> PgWireResult<Response> {
    let fields = Arc::new(arrow_schema_to_pg_fields(&answer.schema, format, None)?);
    let rows: Vec<_> = answer
        .batches
        .into_iter()
        .flat_map(|batch| encode_recordbatch(Arc::clone(&fields), batch))
        .collect();
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

#[async_trait]
impl SimpleQueryHandler for SqlService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let scope = self.parser.scope(client)?;
        // A simple query may hold several statements; each gets its own answer.
        let statements =
            DFParser::parse_sql(query).map_err(|e| query_error(QueryError::from(e)))?;
        let texts: Vec<String> = if statements.len() == 1 {
            vec![query.to_owned()]
        } else {
            statements.iter().map(ToString::to_string).collect()
        };
        let mut responses = Vec::with_capacity(texts.len());
        for text in texts {
            match self.parser.prepare(&scope, &text).await? {
                Prepared::Session(command) => responses.push(command.response()),
                Prepared::Query(planned) => {
                    let answer = self.engine.execute(*planned).await.map_err(query_error)?;
                    responses.push(answer_response(answer, &Format::UnifiedText)?);
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let scope = self.scope(client)?;
        self.prepare(&scope, sql).await.map(Some)
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        match statement {
            Prepared::Session(_) => Ok(Vec::new()),
            Prepared::Query(planned) => planned
                .parameter_types()
                .map_err(query_error)?
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::TEXT), into_pg_type))
                .collect(),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match statement {
            Prepared::Session(_) => Ok(Vec::new()),
            Prepared::Query(planned) => arrow_schema_to_pg_fields(
                &planned.schema(),
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for SqlService {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            Prepared::Session(command) => Ok(command.response()),
            Prepared::Query(planned) => {
                // Prepared while the sign-in held; it must still hold to run.
                self.parser.scope(client)?;
                let values = bound_parameters(portal, planned)?;
                let planned = planned
                    .clone()
                    .with_parameters(values)
                    .map_err(query_error)?;
                let answer = self.engine.execute(planned).await.map_err(query_error)?;
                answer_response(answer, &portal.result_column_format)
            }
        }
    }
}

/// The values bound to `$1`, `$2`, …: decoded as the client declared them (or as the
/// planner inferred, or as text), then cast to the type the plan expects.
fn bound_parameters(
    portal: &Portal<Prepared>,
    planned: &PlannedQuery,
) -> PgWireResult<Vec<ScalarValue>> {
    let expected = planned.parameter_types().map_err(query_error)?;
    if portal.parameter_len() != expected.len() {
        return Err(user_error(
            "ERROR",
            "08P01",
            format!(
                "the statement takes {} parameters, {} were bound",
                expected.len(),
                portal.parameter_len()
            ),
        ));
    }
    let declared = &portal.statement.parameter_types;
    expected
        .iter()
        .enumerate()
        .map(|(index, expected)| {
            let wire_type = match declared.get(index).cloned().flatten() {
                Some(t) if t != Type::UNKNOWN => t,
                _ => expected.as_ref().map_or(Ok(Type::TEXT), into_pg_type)?,
            };
            let value = decode_parameter(portal, index, &wire_type)?;
            match expected {
                Some(data_type) if value.data_type() != *data_type => {
                    value.cast_to(data_type).map_err(|e| {
                        user_error(
                            "ERROR",
                            "22P02",
                            format!("parameter ${}: {}", index + 1, e.message()),
                        )
                    })
                }
                _ => Ok(value),
            }
        })
        .collect()
}

fn decode_parameter(
    portal: &Portal<Prepared>,
    index: usize,
    wire_type: &Type,
) -> PgWireResult<ScalarValue> {
    Ok(match *wire_type {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(index, wire_type)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(index, wire_type)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(index, wire_type)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(index, wire_type)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(index, wire_type)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(index, wire_type)?),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::DateTime<chrono::FixedOffset>>(index, wire_type)?
                .map(|t| t.timestamp_micros()),
            Some("UTC".into()),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::NaiveDateTime>(index, wire_type)?
                .map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<chrono::NaiveDate>(index, wire_type)?
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32),
        ),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            ScalarValue::Utf8(portal.parameter::<String>(index, wire_type)?)
        }
        ref other => {
            return Err(user_error(
                "ERROR",
                "0A000",
                format!(
                    "parameter ${} has type {}, which this server does not take; cast it in the SQL (e.g. ${}::text)",
                    index + 1,
                    other.name(),
                    index + 1
                ),
            ));
        }
    })
}
