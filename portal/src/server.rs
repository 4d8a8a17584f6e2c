//! The portal's HTTP server: routes, shared state, start and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sunfleet_engine::registry::Registry;
use sunfleet_query::QueryEngine;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{PortalError, api, pages};
use sunfleet_query::throttle::SignInThrottle;

/// Portal settings.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub listen: SocketAddr,
    /// How long a session lasts after sign-in.
    pub session_lifetime_us: i64,
    /// Mark cookies `Secure` (the portal is reached over HTTPS, e.g. behind a proxy).
    pub secure_cookies: bool,
    /// Shared with the SQL endpoints, so one count of failures covers every sign-in.
    pub sign_in_throttle: Arc<SignInThrottle>,
    /// The address people reach the portal at (`https://portal.example.com`), for links
    /// sent to them; without it, the address of the request.
    pub public_url: Option<String>,
    /// Where the side panel's weather comes from; none: no weather is shown.
    pub weather: Option<crate::weather::SharedWeather>,
    /// Where mail goes, in words (`MailConfig::describe`), for the platform administrator's
    /// mail page; none: no SMTP server, mail stays in the outbox.
    pub mail_delivery: Option<String>,
}

impl PortalConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            session_lifetime_us: 12 * 3_600_000_000,
            secure_cookies: false,
            sign_in_throttle: Arc::new(SignInThrottle::new(Default::default())),
            public_url: None,
            weather: None,
            mail_delivery: None,
        }
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub sign_ins: AtomicU64,
    pub failed_sign_ins: AtomicU64,
}

pub(crate) struct Shared {
    /// The address the portal listens on (the configured one, with the port chosen).
    pub local_addr: SocketAddr,
    pub query: Arc<QueryEngine>,
    pub registry: Arc<Registry>,
    pub config: PortalConfig,
    pub throttle: Arc<SignInThrottle>,
    pub metrics: Metrics,
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl AppState {
    pub fn query(&self) -> &Arc<QueryEngine> {
        &self.0.query
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.0
    }

    /// The portal's address in links mailed to people: the configured public URL, or
    /// `http://127.0.0.1:<port>` (the listening address when it is a specific one). Never
    /// the request's `Host`, which whoever sends the request chooses.
    pub fn public_base(&self) -> String {
        let shared = self.shared();
        if let Some(url) = &shared.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let mut address = shared.local_addr;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    }
}

/// A running portal.
pub struct PortalServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PortalServer {
    /// Binds `config.listen` and serves until [`PortalServer::shutdown`].
    pub async fn start(
        config: PortalConfig,
        query: Arc<QueryEngine>,
        registry: Arc<Registry>,
    ) -> Result<Self, PortalError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|e| PortalError::Internal {
                    context: format!("binding the portal to {}: {e}", config.listen),
                })?;
        let local_addr = listener.local_addr().map_err(|e| PortalError::Internal {
            context: format!("reading the portal's address: {e}"),
        })?;
        let state = AppState(Arc::new(Shared {
            local_addr,
            query,
            registry,
            throttle: Arc::clone(&config.sign_in_throttle),
            config,
            metrics: Metrics::default(),
        }));
        let app = router(state);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "the portal stopped");
            }
        });
        Ok(Self {
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Every route of the portal.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::dashboard::page))
        .route(
            "/signin",
            get(pages::signin::form).post(pages::signin::submit),
        )
        .route("/signout", post(pages::signin::sign_out))
        .route("/alerts", get(pages::alerts::page))
        .route("/systems", get(pages::systems::page))
        .route("/systems.csv", get(pages::systems::csv))
        .route("/systems/columns", post(pages::systems::save_columns))
        .route("/systems/{id}", get(pages::system::view::page))
        .route("/systems/{id}/graph", get(pages::system::graph::page))
        .route("/systems/{id}/graph.json", get(pages::system::graph::json))
        .route("/systems/{id}/reports", get(pages::system::reports::page))
        .route(
            "/systems/{id}/reports.csv",
            get(pages::system::reports::csv),
        )
        .route(
            "/systems/{id}/reports/print",
            get(pages::system::reports::print),
        )
        .route("/systems/{id}/live", get(pages::system::live::page))
        .route("/systems/{id}/live.json", get(pages::system::live::json))
        .route("/systems/{id}/services", get(pages::system::services::page))
        .route(
            "/systems/{id}/services/incentive",
            post(pages::system::services::incentive),
        )
        .route(
            "/systems/{id}/services/permit",
            post(pages::system::services::permit),
        )
        .route("/systems/{id}/kiosk", get(pages::system::kiosk::page))
        .route(
            "/systems/{id}/kiosk/links",
            post(pages::system::kiosk::create_link),
        )
        .route(
            "/systems/{id}/kiosk/links/{link}/revoke",
            post(pages::system::kiosk::revoke_link),
        )
        .route("/kiosk/{token}", get(pages::system::kiosk::public))
        .route(
            "/systems/{id}/settings",
            get(pages::system::settings::overview),
        )
        .route(
            "/systems/{id}/settings/owner",
            post(pages::system::settings::save_owner),
        )
        .route(
            "/systems/{id}/settings/labor",
            get(pages::system::settings::labor_page).post(pages::system::settings::submit_claim),
        )
        .route(
            "/systems/{id}/settings/references",
            get(pages::system::settings::references).post(pages::system::settings::save_references),
        )
        .route(
            "/systems/{id}/settings/estimate",
            get(pages::system::settings::estimate).post(pages::system::settings::save_estimate),
        )
        .route(
            "/systems/{id}/settings/arrays",
            get(pages::system::settings::arrays_page),
        )
        .route(
            "/systems/{id}/settings/arrays/builder",
            get(pages::system::settings::builder_page).post(pages::system::settings::save_builder),
        )
        .route(
            "/systems/{id}/settings/self-service",
            get(pages::system::settings::self_service),
        )
        .route(
            "/systems/{id}/settings/self-service/return",
            get(pages::system::settings::return_form).post(pages::system::settings::submit_return),
        )
        .route(
            "/systems/{id}/settings/self-service/return/devices",
            get(pages::system::settings::search_return_devices),
        )
        .route(
            "/systems/{id}/settings/self-service/return/pick",
            get(pages::system::settings::pick_return_device),
        )
        .route(
            "/systems/{id}/settings/self-service/replacement",
            get(pages::system::settings::replacement_form)
                .post(pages::system::settings::submit_replacement),
        )
        .route(
            "/systems/{id}/settings/self-service/gateway",
            get(pages::system::settings::gateway_form)
                .post(pages::system::settings::submit_gateway),
        )
        .route(
            "/systems/{id}/settings/self-service/gateway/reprovision",
            post(pages::system::settings::submit_reprovision),
        )
        .route("/systems/{id}/devices", get(pages::system::devices::page))
        .route(
            "/systems/{id}/devices/provision",
            post(pages::system::devices::provision),
        )
        .route(
            "/systems/{id}/devices/{device_id}",
            get(pages::system::devices::device),
        )
        .route(
            "/systems/{id}/devices/{device_id}/tasks",
            post(pages::system::devices::queue_task),
        )
        .route(
            "/systems/{id}/diagnostics",
            get(pages::system::diagnostics::page).post(pages::system::diagnostics::submit),
        )
        .route("/systems/{id}/events", get(pages::system::events::page))
        .route(
            "/activations",
            get(pages::activations::list).post(pages::activations::create),
        )
        .route("/activations/new", get(pages::activations::new_form))
        .route(
            "/activations/{id}/owner-access",
            post(pages::activations::send_owner_access),
        )
        .route(
            "/activations/{id}",
            get(pages::activations::details).post(pages::activations::update),
        )
        .route("/admin/mail", get(pages::admin_mail::list))
        .route("/admin/mail/{id}", get(pages::admin_mail::message))
        .route("/help", get(pages::help::page))
        .route("/services", get(pages::services::page))
        .route(
            "/services/requests/{id}",
            get(pages::services::request_page),
        )
        .route(
            "/services/requests/{id}/status",
            post(pages::services::advance),
        )
        .route("/privacy", get(pages::privacy::page))
        .route("/privacy/keys", post(pages::privacy::create_key))
        .route(
            "/privacy/keys/{id}/revoke",
            post(pages::privacy::revoke_key),
        )
        .route("/privacy/feeds", post(pages::privacy::create_feed))
        .route(
            "/privacy/feeds/{id}/revoke",
            post(pages::privacy::revoke_feed),
        )
        .route(
            "/feeds/monthly-production.csv",
            get(pages::privacy::monthly_production_feed),
        )
        .route("/account", get(pages::account::page))
        .route("/account/password", post(pages::account::change_password))
        .route("/account/language", post(pages::account::set_language))
        .route("/users", get(pages::users::page))
        .route("/users/{id}/active", post(pages::users::set_active))
        .route("/users/invite", post(pages::users::invite))
        .route(
            "/users/subcontractors",
            post(pages::users::add_subcontractor),
        )
        .route("/users/grants", post(pages::users::grant))
        .route("/users/grants/revoke", post(pages::users::revoke))
        .route(
            "/welcome",
            get(pages::welcome::form).post(pages::welcome::submit),
        )
        .route("/assets/{name}", get(pages::asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/me", get(api::me))
        .route("/api/systems", get(api::systems))
        .route("/api/alerts", get(api::alerts))
        .route("/api/dashboard", get(api::dashboard))
        .route("/api/activations", get(api::activations))
        .route("/api/activations/{id}", get(api::activation))
        .route("/api/sql", post(api::sql))
        .route("/api/openapi.json", get(api::openapi))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_and_harden,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    let error = PortalError::NotFound {
        what: format!("page {}", request.uri().path()),
    };
    if request.uri().path().starts_with("/api/") {
        error.into_json_response()
    } else {
        error.into_response()
    }
}

/// Counts requests by outcome and sets the headers every answer carries.
async fn count_and_harden(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let metrics = &state.shared().metrics;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() {
        metrics.client_errors.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        metrics.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    // Reached over HTTPS (the cookies are Secure): browsers keep to HTTPS from then on.
    if state.shared().config.secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn healthz(State(state): State<AppState>) -> Response {
    // The registry answers and the WAL takes writes: enough to take traffic.
    let registry = std::sync::Arc::clone(state.registry());
    let check = crate::session::blocking(move || Ok(registry.schema_version()?)).await;
    match check {
        // Nothing can be acknowledged: a balancer should send gateways elsewhere and an
        // operator restart the server once the disk is fixed.
        Ok(_) if state.query().store().wal_failed() => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable: a WAL write failed (disk full or failing?); readings are refused \
             until the server restarts\n",
        )
            .into_response(),
        Ok(version) => (
            axum::http::StatusCode::OK,
            format!(
                "ok: registry schema {version}, {} rows buffered\n",
                state.query().store().buffered_rows()
            ),
        )
            .into_response(),
        Err(error) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {}\n", error.public_message()),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.shared().metrics;
    let store = state.query().store();
    let body = format!(
        "# HELP sunfleet_portal_requests_total HTTP requests answered by the portal.\n\
         # TYPE sunfleet_portal_requests_total counter\n\
         sunfleet_portal_requests_total {}\n\
         # HELP sunfleet_portal_client_errors_total Requests answered 4xx.\n\
         # TYPE sunfleet_portal_client_errors_total counter\n\
         sunfleet_portal_client_errors_total {}\n\
         # HELP sunfleet_portal_server_errors_total Requests answered 5xx.\n\
         # TYPE sunfleet_portal_server_errors_total counter\n\
         sunfleet_portal_server_errors_total {}\n\
         # HELP sunfleet_portal_sign_ins_total Successful sign-ins.\n\
         # TYPE sunfleet_portal_sign_ins_total counter\n\
         sunfleet_portal_sign_ins_total {}\n\
         # HELP sunfleet_portal_failed_sign_ins_total Refused sign-ins (wrong password or throttled).\n\
         # TYPE sunfleet_portal_failed_sign_ins_total counter\n\
         sunfleet_portal_failed_sign_ins_total {}\n\
         # HELP sunfleet_engine_buffered_rows Rows in the write buffer, not yet persisted.\n\
         # TYPE sunfleet_engine_buffered_rows gauge\n\
         sunfleet_engine_buffered_rows {}\n",
        m.requests.load(Ordering::Relaxed),
        m.client_errors.load(Ordering::Relaxed),
        m.server_errors.load(Ordering::Relaxed),
        m.sign_ins.load(Ordering::Relaxed),
        m.failed_sign_ins.load(Ordering::Relaxed),
        store.buffered_rows(),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}
