//! The JSON API against its OpenAPI description, with schemathesis generating the requests.

use crate::demo::start_demo;
use crate::{free_tcp_port, interop_script, python, stderr, stdout};
use std::process::Command;

const PASSWORD: &str = "sunfleet-demo";

#[test]
fn every_api_answer_matches_the_openapi_description() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(&dir.path().join("demo"), free_tcp_port());
    let portal = format!("http://{}", demo.portal);
    // An installer administrator sees every operation succeed; an owner (no SQL) and an
    // analyst (no fleet pages) meet the refusals: all must answer as documented.
    for role in [
        "installer administrator",
        "system owner (read-only)",
        "analyst (SQL only)",
    ] {
        let run = Command::new(python())
            .arg(interop_script("api_schema_check.py"))
            .args([&portal, &demo.accounts[role], PASSWORD, "40"])
            // schemathesis keeps a cache folder where it runs.
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            run.status.success() && stdout(&run).contains("schemathesis passed"),
            "{role}:\n{}\n{}",
            stdout(&run),
            stderr(&run)
        );
    }
}
