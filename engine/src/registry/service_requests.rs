//! Service requests (S7, T2, R1–R3): what an installer asks the manufacturer or a
//! programme for, tracked by status. Each is numbered by its row id (`SR-000042`).
//!
//! A request is filed `new`; the manufacturer's team moves it on (`in_progress`,
//! `approved`, `shipped` for what sends hardware, `resolved`) or rejects it. Every change,
//! the filing included, adds a row to `service_request_history` in the same transaction
//! as the change itself, so the history and the current status never disagree.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

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

/// The return authorisation number a return or replacement gets when it is approved.
pub fn rma_number(id: i64) -> String {
    format!("RMA-{id:06}")
}

/// Where a service request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Filed, not yet looked at.
    New,
    /// The manufacturer's team is looking at it.
    InProgress,
    /// Accepted (a return gets its RMA number).
    Approved,
    /// The replacement hardware is on its way (returns and replacements only).
    Shipped,
    /// Done.
    Resolved,
    /// Refused; nothing more happens.
    Rejected,
}

impl RequestState {
    pub const ALL: [RequestState; 6] = [
        RequestState::New,
        RequestState::InProgress,
        RequestState::Approved,
        RequestState::Shipped,
        RequestState::Resolved,
        RequestState::Rejected,
    ];

    /// The registry's code.
    pub fn code(self) -> &'static str {
        match self {
            RequestState::New => "new",
            RequestState::InProgress => "in_progress",
            RequestState::Approved => "approved",
            RequestState::Shipped => "shipped",
            RequestState::Resolved => "resolved",
            RequestState::Rejected => "rejected",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether nothing follows this state.
    pub fn is_final(self) -> bool {
        matches!(self, RequestState::Resolved | RequestState::Rejected)
    }

    /// The states a request of `kind` may move to from this one, the usual next step
    /// first. Only what sends hardware back and forth (returns, replacements) passes
    /// through `shipped`; a request can be rejected until it is approved.
    pub fn next(self, kind: &str) -> &'static [RequestState] {
        use RequestState::*;
        match self {
            New => &[InProgress, Rejected],
            InProgress => &[Approved, Rejected],
            Approved if ships_hardware(kind) => &[Shipped],
            Approved => &[Resolved],
            Shipped => &[Resolved],
            Resolved | Rejected => &[],
        }
    }
}

/// Whether requests of `kind` send hardware (and so pass through `shipped`).
pub fn ships_hardware(kind: &str) -> bool {
    matches!(kind, "return" | "replacement")
}

/// Why a status change was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionRefusal {
    /// No request has this id.
    UnknownRequest,
    /// The request is `from`; it cannot become `to` (`allowed` lists what it can).
    NotAllowed {
        from: RequestState,
        to: RequestState,
        allowed: Vec<RequestState>,
    },
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub state: RequestState,
    pub at_us: i64,
    pub by_user: Option<i64>,
    /// The user's name (or e-mail when they gave none); empty when nobody is recorded.
    pub by_name: String,
    pub note: String,
}

/// A device a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDevice {
    pub device_id: i64,
    pub serial: u64,
    /// `gateway`, `microinverter`, `meter` or `battery`.
    pub kind: String,
    pub model: String,
    /// `provisioned`, `active` or `retired`.
    pub state: String,
}

/// A service request with everything its page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequestRecord {
    pub id: i64,
    pub kind: String,
    pub system_id: i64,
    pub system_name: String,
    pub device_id: Option<i64>,
    pub company_id: i64,
    pub created_by: Option<i64>,
    pub state: RequestState,
    pub reason: String,
    pub details: serde_json::Value,
    pub rma_number: Option<String>,
    pub created_us: i64,
    pub updated_us: i64,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    /// A return's devices (by serial); the request's own device for other kinds.
    pub devices: Vec<RequestDevice>,
}

/// Files `request` (state `new`, its first history entry) inside `tx`, audited; returns
/// its id.
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
             SELECT ?1, s.id, ?3, COALESCE(?4, s.installer_id), ?5, 'new', ?6, ?7, ?8, ?8
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
    insert_history(
        tx,
        id,
        RequestState::New,
        Some(request.created_by),
        "",
        request.at_us,
    )?;
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

fn insert_history(
    tx: &Transaction<'_>,
    request_id: i64,
    state: RequestState,
    by_user: Option<i64>,
    note: &str,
    at_us: i64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO service_request_history (request_id, state, at_us, by_user, note)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![request_id, state.code(), at_us, by_user, note],
    )
    .map_err(sql_error(format!(
        "recording {} becoming {}",
        service_request_number(request_id),
        state.code()
    )))?;
    Ok(())
}

/// A state read from the registry (its CHECK constraint allows only known codes).
fn state_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<RequestState> {
    let code: String = row.get(index)?;
    RequestState::from_code(&code).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown service request state {code:?}").into(),
        )
    })
}

impl Registry {
    /// Files `request` (state `new`); returns its id.
    pub fn create_service_request(&self, request: &NewServiceRequest) -> Result<i64, Error> {
        self.transaction("filing a service request", |tx| {
            insert_service_request(tx, request)
        })
    }

    /// Moves request `id` to `to`, when its current state allows it, recording the step in
    /// its history (with `note`, possibly empty) and the audit log in one transaction. A
    /// return or replacement gets its RMA number when approved. Returns the state it left.
    pub fn advance_service_request(
        &self,
        id: i64,
        to: RequestState,
        note: &str,
        by_user: i64,
        now_us: i64,
    ) -> Result<Result<RequestState, TransitionRefusal>, Error> {
        self.transaction("changing a service request's status", |tx| {
            let number = service_request_number(id);
            let current: Option<(String, RequestState)> = tx
                .query_row(
                    "SELECT kind, state FROM service_requests WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, state_column(row, 1)?)),
                )
                .optional()
                .map_err(sql_error(format!("reading {number}")))?;
            let Some((kind, from)) = current else {
                return Ok(Err(TransitionRefusal::UnknownRequest));
            };
            let allowed = from.next(&kind);
            if !allowed.contains(&to) {
                return Ok(Err(TransitionRefusal::NotAllowed {
                    from,
                    to,
                    allowed: allowed.to_vec(),
                }));
            }
            let rma =
                (to == RequestState::Approved && ships_hardware(&kind)).then(|| rma_number(id));
            tx.execute(
                "UPDATE service_requests
                    SET state = ?1, updated_us = ?2, rma_number = COALESCE(rma_number, ?3)
                  WHERE id = ?4",
                params![to.code(), now_us, rma, id],
            )
            .map_err(sql_error(format!("changing the status of {number}")))?;
            insert_history(tx, id, to, Some(by_user), note, now_us)?;
            insert_audit(
                tx,
                Some(by_user),
                &format!("service_request_{}", to.code()),
                "service_request",
                Some(id),
                &format!(
                    "{number}: {} → {}{}",
                    from.code(),
                    to.code(),
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(" ({note})")
                    }
                ),
                now_us,
            )?;
            Ok(Ok(from))
        })
    }

    /// Request `id` with its history and devices, if it exists. The caller decides whether
    /// the reader may see its system.
    pub fn service_request(&self, id: i64) -> Result<Option<ServiceRequestRecord>, Error> {
        let connection = self.connection();
        read_service_request(&connection, id)
    }

    /// The labour claims filed for return request `return_id`: (claim id, state).
    pub fn labor_claims_for_return(
        &self,
        return_id: i64,
    ) -> Result<Vec<(i64, RequestState)>, Error> {
        let context = format!(
            "reading the labour claims of {}",
            service_request_number(return_id)
        );
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT id, state FROM service_requests
                  WHERE kind = 'labor_claim'
                    AND json_extract(details, '$.return_request') = ?1
                  ORDER BY id",
            )
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![return_id], |row| {
                Ok((row.get(0)?, state_column(row, 1)?))
            })
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }
}

pub(super) fn read_service_request(
    connection: &Connection,
    id: i64,
) -> Result<Option<ServiceRequestRecord>, Error> {
    let context = format!("reading {}", service_request_number(id));
    let record = connection
        .query_row(
            "SELECT r.id, r.kind, r.system_id, s.name, r.device_id, r.company_id, r.created_by,
                    r.state, r.reason, r.details, r.rma_number, r.created_us, r.updated_us
               FROM service_requests r JOIN systems s ON s.id = r.system_id
              WHERE r.id = ?1",
            params![id],
            |row| {
                let details: String = row.get(9)?;
                Ok(ServiceRequestRecord {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    system_id: row.get(2)?,
                    system_name: row.get(3)?,
                    device_id: row.get(4)?,
                    company_id: row.get(5)?,
                    created_by: row.get(6)?,
                    state: state_column(row, 7)?,
                    reason: row.get(8)?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    rma_number: row.get(10)?,
                    created_us: row.get(11)?,
                    updated_us: row.get(12)?,
                    history: Vec::new(),
                    devices: Vec::new(),
                })
            },
        )
        .optional()
        .map_err(sql_error(&context))?;
    let Some(mut record) = record else {
        return Ok(None);
    };
    let mut statement = connection
        .prepare(
            "SELECT h.state, h.at_us, h.by_user,
                    COALESCE(NULLIF(trim(u.given_name || ' ' || u.family_name), ''), u.email, ''),
                    h.note
               FROM service_request_history h LEFT JOIN users u ON u.id = h.by_user
              WHERE h.request_id = ?1 ORDER BY h.id",
        )
        .map_err(sql_error(&context))?;
    record.history = statement
        .query_map(params![id], |row| {
            Ok(HistoryEntry {
                state: state_column(row, 0)?,
                at_us: row.get(1)?,
                by_user: row.get(2)?,
                by_name: row.get(3)?,
                note: row.get(4)?,
            })
        })
        .map_err(sql_error(&context))?
        .collect::<Result<_, _>>()
        .map_err(sql_error(&context))?;
    let mut statement = connection
        .prepare(
            "SELECT d.id, d.serial, d.kind, d.model, d.state FROM devices d
              WHERE d.id IN (SELECT device_id FROM service_request_devices WHERE request_id = ?1)
                 OR d.id = ?2
              ORDER BY d.serial",
        )
        .map_err(sql_error(&context))?;
    record.devices = statement
        .query_map(params![id, record.device_id], |row| {
            Ok(RequestDevice {
                device_id: row.get(0)?,
                serial: row.get::<_, i64>(1)?.max(0).unsigned_abs(),
                kind: row.get(2)?,
                model: row.get(3)?,
                state: row.get(4)?,
            })
        })
        .map_err(sql_error(&context))?
        .collect::<Result<_, _>>()
        .map_err(sql_error(&context))?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_code_that_reads_back() {
        for state in RequestState::ALL {
            assert_eq!(RequestState::from_code(state.code()), Some(state));
        }
        assert_eq!(RequestState::from_code("submitted"), None);
    }

    #[test]
    fn only_hardware_requests_pass_through_shipped() {
        use RequestState::*;
        assert_eq!(Approved.next("return"), &[Shipped]);
        assert_eq!(Approved.next("replacement"), &[Shipped]);
        assert_eq!(Approved.next("labor_claim"), &[Resolved]);
        assert_eq!(Approved.next("permit"), &[Resolved]);
        for kind in ["return", "permit"] {
            assert!(Resolved.next(kind).is_empty());
            assert!(Rejected.next(kind).is_empty());
            assert!(New.next(kind).contains(&Rejected));
        }
        // Every state is reachable from `new`, and every path ends.
        let mut reached = vec![New];
        let mut frontier = vec![New];
        while let Some(state) = frontier.pop() {
            for next in state.next("return") {
                if !reached.contains(next) {
                    reached.push(*next);
                    frontier.push(*next);
                }
            }
        }
        assert_eq!(reached.len(), RequestState::ALL.len());
    }
}
