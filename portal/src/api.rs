//! The JSON API beside the pages: the same data, the same [`crate::access::authorize`]
//! decisions and the same scope; and `POST /api/sql` for analysts. A request signed in
//! with the session cookie that changes or runs something carries the session's CSRF
//! token in `X-CSRF-Token`. Errors are `{"error": "..."}` with the status code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sunfleet_query::output::ResultFormat;

use crate::access::{Need, authorize};
use crate::fleet;
use crate::pages::activations;
use crate::server::AppState;
use crate::session::CSRF_HEADER;
use crate::{PortalError, Principal};
use sunfleet_engine::registry::ACTIVATION_STEPS;

/// The OpenAPI description of this API, served at `/api/openapi.json`.
const OPENAPI: &str = include_str!("../assets/openapi.json");

/// A principal for the API: failures answer JSON.
pub struct ApiPrincipal(pub Principal);

pub struct ApiError(pub PortalError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_json_response()
    }
}

impl<E: Into<PortalError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl FromRequestParts<AppState> for ApiPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Principal::from_request_parts(parts, state)
            .await
            .map(ApiPrincipal)
            .map_err(ApiError)
    }
}

/// axum's `Query`, refusing a bad query string with a JSON error like the rest of the API.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(malformed(rejection.status(), rejection.body_text())),
        }
    }
}

/// axum's `Path`, refusing a bad path parameter with a JSON error like the rest of the API.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(malformed(rejection.status(), rejection.body_text())),
        }
    }
}

fn malformed(status: StatusCode, message: String) -> ApiError {
    ApiError(PortalError::Malformed { status, message })
}

type ApiResult = Result<Response, ApiError>;

pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

pub async fn me(ApiPrincipal(principal): ApiPrincipal) -> ApiResult {
    Ok(Json(json!({
        "id": principal.user.id,
        "email": principal.user.email,
        "role": principal.user.role.as_str(),
        "company_id": principal.user.company_id,
        "owner_id": principal.user.owner_id,
        "systems_visible": principal.scope.systems().map(|s| s.len()),
    }))
    .into_response())
}

pub async fn systems(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
) -> ApiResult {
    authorize(&principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let systems = fleet::systems_with_figures(state.query(), &principal.scope, now).await?;
    Ok(Json(json!({ "systems": systems })).into_response())
}

pub async fn alerts(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
) -> ApiResult {
    authorize(&principal, Need::FleetPages)?;
    let alerts = fleet::open_alerts(state.query(), &principal.scope).await?;
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

pub async fn dashboard(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
) -> ApiResult {
    authorize(&principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let engine = state.query();
    let systems = fleet::systems_with_figures(engine, &principal.scope, now).await?;
    let services = fleet::service_summary(engine, &principal.scope).await?;
    let scorecard = fleet::scorecard(engine, &principal.scope, &systems, now).await?;
    let alerts = systems.iter().filter(|s| fleet::in_alert(s)).count();
    let activations = systems.iter().filter(|s| s.stage != "ready").count();
    Ok(Json(json!({
        "systems": systems.len(),
        "alerts": alerts,
        "activations": activations,
        "service_requests": services,
        "scorecard": scorecard,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct ActivationsQuery {
    stage: Option<String>,
}

/// Activating systems (`?stage=started|connecting|verifying|ready|all`; default: not
/// Ready) with their checklist's completion.
pub async fn activations(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
    ApiQuery(query): ApiQuery<ActivationsQuery>,
) -> ApiResult {
    authorize(&principal, Need::FleetPages)?;
    let stage = query.stage.as_deref();
    if let Some(stage) = stage
        && stage != "all"
        && !fleet::STAGES.iter().any(|(code, _)| *code == stage)
    {
        return Err(PortalError::BadRequest {
            message: format!(
                "unknown stage {stage:?}: started, connecting, verifying, ready or all"
            ),
        }
        .into());
    }
    let (rows, _) = activations::activation_rows(&state, &principal, stage).await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "system_id": r.id,
                "name": r.name,
                "stage": r.stage_code,
                "percent_complete": r.percent,
                "city": r.city,
            })
        })
        .collect();
    Ok(Json(json!({ "activations": rows })).into_response())
}

/// One system's activation: its form as saved, checklist steps with their times.
pub async fn activation(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let a = activations::load(&state, &principal, id).await?;
    let f = &a.form;
    let steps: Vec<_> = ACTIVATION_STEPS
        .iter()
        .map(|(step, stage)| {
            json!({ "step": step, "stage": stage, "completed_us": a.steps.get(*step) })
        })
        .collect();
    Ok(Json(json!({
        "system_id": a.system_id,
        "stage": a.stage,
        "percent_complete": activations::percent_complete(a.steps.len()),
        "steps": steps,
        "name": f.name,
        "kind": f.kind,
        "installer_reference": f.installer_reference,
        "third_party_owned": f.third_party_owned,
        "owner": f.owner.as_ref().map(|o| json!({
            "given_name": o.given_name, "family_name": o.family_name,
            "email": o.email, "phone": o.phone,
        })),
        "street_address": f.street_address,
        "city": f.city,
        "region": f.region,
        "postal_code": f.postal_code,
        "country": f.country,
        "latitude": f.latitude,
        "longitude": f.longitude,
        "time_zone": f.time_zone,
        "gateway_serials": f.gateway_serials.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "expected_microinverters": f.expected_microinverters,
        "microinverters": a.microinverters,
        "operational_date": f.operational_date.map(|d| d.to_string()),
        "annual_degradation_pct": f.annual_degradation_pct,
        "monthly_estimate_kwh": f.monthly_estimate_kwh,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct SqlQuery {
    format: Option<String>,
}

/// Runs one SQL statement in the principal's scope. The body is the SQL text (or JSON
/// `{"sql": "..."}`); `?format=json|csv|arrow` chooses the answer (JSON by default).
pub async fn sql(
    State(state): State<AppState>,
    ApiPrincipal(principal): ApiPrincipal,
    ApiQuery(query): ApiQuery<SqlQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&principal, Need::Sql)?;
    principal.check_csrf(headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))?;
    let body = body.map_err(|rejection| malformed(rejection.status(), rejection.body_text()))?;
    let body = String::from_utf8(body.to_vec()).map_err(|e| PortalError::BadRequest {
        message: format!("the request body is not UTF-8 text: {e}"),
    })?;
    let format = match query.format.as_deref() {
        None => ResultFormat::Json,
        Some(name) => ResultFormat::from_name(name).ok_or_else(|| PortalError::BadRequest {
            message: format!("unknown format {name:?}: use json, csv or arrow"),
        })?,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = if is_json {
        #[derive(Deserialize)]
        struct Body {
            sql: String,
        }
        serde_json::from_str::<Body>(&body)
            .map_err(|e| PortalError::BadRequest {
                message: format!("the JSON body must be {{\"sql\": \"...\"}}: {e}"),
            })?
            .sql
    } else {
        body
    };
    if text.trim().is_empty() {
        return Err(PortalError::BadRequest {
            message: "no SQL in the request body".to_owned(),
        }
        .into());
    }
    let answer = state.query().sql(&principal.scope, &text).await?;
    let mut out = Vec::new();
    answer
        .write(format, &mut out)
        .map_err(|e| PortalError::Internal {
            context: format!("writing a SQL answer: {e}"),
        })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        out,
    )
        .into_response())
}
