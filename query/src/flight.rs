//! Arrow Flight SQL in front of [`QueryEngine`], so ADBC and JDBC Flight SQL clients get
//! results as Arrow, without conversion.
//!
//! - **Sign-in**: the Flight handshake with HTTP Basic credentials (a registry user's
//!   e-mail and password, checked with argon2) returns a bearer token; every other call
//!   must carry it. Tokens live in memory and expire ([`TOKEN_LIFETIME`]); one stops
//!   working at once when its user is deactivated, changes password or loses SQL access
//!   ([`SqlSignIn`]). Failed sign-ins count toward the portal's limits.
//! - **Per-principal session**: a statement is planned and run in a session built for the
//!   token's user at that moment, as on the Postgres endpoint. Tickets carry only the SQL;
//!   whoever redeems one is checked again and sees only their own scope.
//! - **Read-only**: queries and prepared queries (without parameters); updates, ingest,
//!   Substrait and transactions are refused with the reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use sunfleet_engine::registry::StandingSignIn;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::sql_sign_in::{SignInRefused, SqlSignIn};
use crate::{QueryEngine, QueryError, Scope};

/// How long a sign-in token stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Where and how the Flight SQL endpoint listens.
#[derive(Clone)]
pub struct FlightConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: with them the endpoint speaks TLS only.
    pub tls: Option<(String, String)>,
}

/// The running endpoint.
pub struct FlightServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
}

impl FlightServer {
    pub async fn start(
        config: FlightConfig,
        engine: Arc<QueryEngine>,
        sign_in: Arc<SqlSignIn>,
    ) -> Result<Self, QueryError> {
        let runtime = |message: String| QueryError::Runtime { message };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                runtime(format!(
                    "binding the Flight SQL endpoint to {}: {e}",
                    config.listen
                ))
            })?;
        let local_addr = listener.local_addr().map_err(|e| runtime(e.to_string()))?;
        let mut server = Server::builder();
        if let Some((cert_pem, key_pem)) = &config.tls {
            server = server
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
                .map_err(|e| runtime(format!("Flight SQL TLS: {e}")))?;
        }
        let service = FlightSqlEndpoint {
            engine,
            sign_in,
            tokens: Arc::new(Mutex::new(HashMap::new())),
        };
        let (stop, mut stop_rx) = watch::channel(false);
        let router = server.add_service(FlightServiceServer::new(service));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let serve = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.changed().await;
            };
            if let Err(error) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(%error, "the Flight SQL endpoint stopped");
            }
        });
        Ok(Self {
            local_addr,
            stop,
            serve,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.serve.await;
    }
}

struct Session {
    signed_in: StandingSignIn,
    expires: Instant,
}

#[derive(Clone)]
struct FlightSqlEndpoint {
    engine: Arc<QueryEngine>,
    sign_in: Arc<SqlSignIn>,
    tokens: Arc<Mutex<HashMap<String, Session>>>,
}

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn query_status(error: QueryError) -> Status {
    let message = error.to_string();
    match error {
        QueryError::Sql { .. } | QueryError::BadRequest { .. } => Status::invalid_argument(message),
        QueryError::Refused { .. } => Status::permission_denied(message),
        QueryError::SignInLapsed => Status::unauthenticated(message),
        QueryError::NotFound { .. } => Status::not_found(message),
        QueryError::Timeout { .. } => Status::deadline_exceeded(message),
        QueryError::ResultTooLarge { .. } | QueryError::OutOfMemory { .. } => {
            Status::resource_exhausted(message)
        }
        QueryError::Engine(_) | QueryError::Runtime { .. } => Status::internal(message),
    }
}

impl FlightSqlEndpoint {
    /// The sign-in behind the request's bearer token.
    fn signed_in<T>(&self, request: &Request<T>) -> Result<StandingSignIn, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("sign in first: handshake with Basic credentials")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("expected a Bearer token"))?;
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .filter(|session| session.expires > Instant::now())
            .map(|session| session.signed_in.clone())
            .ok_or_else(|| {
                Status::unauthenticated("the token is unknown or expired: sign in again")
            })
    }

    fn scope<T>(&self, request: &Request<T>) -> Result<Scope, Status> {
        let signed_in = self.signed_in(request)?;
        self.sign_in.scope(&signed_in).map_err(query_status)
    }

    /// A FlightInfo whose one endpoint's ticket, redeemed with `do_get`, runs `sql`.
    async fn flight_info(
        &self,
        scope: &Scope,
        sql: &str,
        ticket: Any,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self.engine.plan(scope, sql).await.map_err(query_status)?;
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&planned.schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs `sql` and streams its batches as Flight data.
    async fn run(
        &self,
        scope: &Scope,
        sql: &str,
    ) -> Result<Response<FlightStream<arrow_flight::FlightData>>, Status> {
        let answer = self.engine.sql(scope, sql).await.map_err(query_status)?;
        let batches = stream::iter(answer.batches.into_iter().map(Ok));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(answer.schema)
            .build(batches)
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(data.boxed()))
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8")))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlEndpoint {
    type FlightService = FlightSqlEndpoint;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<FlightStream<HandshakeResponse>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("send Basic credentials (e-mail and password)")
            })?;
        let encoded = header.strip_prefix("Basic ").ok_or_else(|| {
            Status::unauthenticated("send Basic credentials (e-mail and password)")
        })?;
        // Clients differ on padding (Arrow's Go client, behind ADBC, sends none).
        let base64 = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let decoded = base64
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (email, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        // Unknown behind a proxy that hides it: the e-mail limit still applies.
        let client = request
            .remote_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
        let signed_in = match self
            .sign_in
            .sign_in(email, password, client, "Flight SQL")
            .await
        {
            Ok(signed_in) => signed_in,
            Err(refused) => {
                tracing::info!(%client, %refused, "Flight SQL sign-in refused");
                return Err(match refused {
                    SignInRefused::WrongCredentials { .. } => {
                        Status::unauthenticated(refused.to_string())
                    }
                    SignInRefused::Throttled { .. } => {
                        Status::resource_exhausted(refused.to_string())
                    }
                    SignInRefused::NoSqlAccess { .. } => {
                        Status::permission_denied(refused.to_string())
                    }
                    SignInRefused::Query(error) => query_status(error),
                });
            }
        };
        let token = new_token()?;
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // Expired tokens go at sign-in, not on every call.
        let now = Instant::now();
        tokens.retain(|_, session| session.expires > now);
        tokens.insert(
            token.clone(),
            Session {
                signed_in,
                expires: now + TOKEN_LIFETIME,
            },
        );
        drop(tokens);
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<FlightStream<HandshakeResponse>> =
            Response::new(stream::iter([Ok(reply)]).boxed());
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a valid header"))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into(),
        };
        self.flight_info(&scope, &query.query, ticket.as_any(), request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(&request)?;
        let sql = utf8(&ticket.statement_handle, "the statement handle")?;
        self.run(&scope, &sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let scope = self.scope(&request)?;
        let planned = self
            .engine
            .plan(&scope, &query.query)
            .await
            .map_err(query_status)?;
        let parameters = planned.parameter_types().map_err(query_status)?;
        if !parameters.is_empty() {
            return Err(Status::unimplemented(
                "bound parameters are not taken over Flight SQL yet: write the values into the SQL, or use the Postgres endpoint",
            ));
        }
        let IpcMessage(dataset_schema) =
            SchemaAsIpc::new(&planned.schema(), &IpcWriteOptions::default())
                .try_into()
                .map_err(|e: datafusion::arrow::error::ArrowError| {
                    Status::internal(e.to_string())
                })?;
        Ok(ActionCreatePreparedStatementResult {
            // The handle is the SQL itself: nothing to keep on the server, nothing to leak.
            prepared_statement_handle: query.query.into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.signed_in(&request).map(|_| ())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request)?;
        let sql = utf8(
            &query.prepared_statement_handle,
            "the prepared statement handle",
        )?;
        self.flight_info(&scope, &sql, query.as_any(), request.into_inner())
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let scope = self.scope(&request)?;
        let sql = utf8(
            &query.prepared_statement_handle,
            "the prepared statement handle",
        )?;
        self.run(&scope, &sql).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "bound parameters are not taken over Flight SQL yet: write the values into the SQL, or use the Postgres endpoint",
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// 32 random bytes, hex: unguessable, and valid in an HTTP header.
fn new_token() -> Result<String, Status> {
    use std::fmt::Write;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Status::internal(format!("no randomness for a sign-in token: {e}")))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}
