//! Service requests (S7, T2, R1–R3): what an installer asks the manufacturer or a
//! programme for, tracked by state. Each is numbered by its row id (`SR-000042`).

use rusqlite::{Transaction, params};

use super::audit::insert_audit;
use super::{Registry, sql_error};
use crate::Error;

/// A request to file.
#[derive(Debug, Clone, PartialEq)]
pub struct NewServiceRequest {
    /// `return`, `replacement`, `permit`, `incentive` or `labor_claim`.
    pub kind: &'static str,
    pub system_id: i64,
    pub device_id: Option<i64>,
    /// The company filing it; `None`: the system's installer.
    pub company_id: Option<i64>,
    pub created_by: i64,
    /// One line saying what it is about.
    pub reason: String,
    /// The form's fields as a JSON object.
    pub details: serde_json::Value,
    pub at_us: i64,
}

/// How a request is shown to people: `SR-` and its number.
pub fn service_request_number(id: i64) -> String {
    format!("SR-{id:06}")
}

/// Files `request` (state `submitted`) inside `tx`, audited; returns its id.
pub(super) fn insert_service_request(
    tx: &Transaction<'_>,
    request: &NewServiceRequest,
) -> Result<i64, Error> {
    let context = format!(
        "filing a {} request for system {}",
        request.kind, request.system_id
    );
    let inserted = tx
        .execute(
            "INSERT INTO service_requests
                (kind, system_id, device_id, company_id, created_by, state, reason, details,
                 created_us, updated_us)
             SELECT ?1, s.id, ?3, COALESCE(?4, s.installer_id), ?5, 'submitted', ?6, ?7, ?8, ?8
               FROM systems s WHERE s.id = ?2",
            params![
                request.kind,
                request.system_id,
                request.device_id,
                request.company_id,
                request.created_by,
                request.reason,
                request.details.to_string(),
                request.at_us
            ],
        )
        .map_err(sql_error(&context))?;
    if inserted == 0 {
        return Err(Error::UnknownSystem {
            system_id: request.system_id,
        });
    }
    let id = tx.last_insert_rowid();
    insert_audit(
        tx,
        Some(request.created_by),
        &format!("{}_submitted", request.kind),
        "service_request",
        Some(id),
        &format!(
            "{}, system {}",
            service_request_number(id),
            request.system_id
        ),
        request.at_us,
    )?;
    Ok(id)
}

impl Registry {
    /// Files `request` (state `submitted`); returns its id.
    pub fn create_service_request(&self, request: &NewServiceRequest) -> Result<i64, Error> {
        self.transaction("filing a service request", |tx| {
            insert_service_request(tx, request)
        })
    }
}
