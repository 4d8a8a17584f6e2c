//! Support (F6): what each status and alert means and what to do about it.

use askama::Template;
use axum::response::Response;

use super::{Chrome, render};
use crate::i18n::Lang;
use crate::{PortalError, Principal};

// The help is prose: one template per language rather than one sentence at a time.
#[derive(Template)]
#[template(path = "help.html")]
struct HelpPage {
    chrome: Chrome,
}

#[derive(Template)]
#[template(path = "help_fr.html")]
struct HelpPageFr {
    chrome: Chrome,
}

pub async fn page(principal: Principal) -> Result<Response, PortalError> {
    let chrome = Chrome::new(&principal, "Support", "support");
    match chrome.lang {
        Lang::En => render("help", &HelpPage { chrome }),
        Lang::Fr => render("help", &HelpPageFr { chrome }),
    }
}
