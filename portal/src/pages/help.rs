//! Support (F6): what each status and alert means and what to do about it.

use askama::Template;
use axum::response::Response;

use super::{Chrome, render};
use crate::{PortalError, Principal};

#[derive(Template)]
#[template(path = "help.html")]
struct HelpPage {
    chrome: Chrome,
}

pub async fn page(principal: Principal) -> Result<Response, PortalError> {
    render(
        "help",
        &HelpPage {
            chrome: Chrome::new(&principal, "Support", "support"),
        },
    )
}
