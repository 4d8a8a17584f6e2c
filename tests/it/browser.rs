//! The portal in a real browser: headless Chromium (driven by playwright-core, see
//! `tests/browser/portal.mjs`) signs in as every demo account and walks the dashboard,
//! alerts, systems list (search, sort, paging, column chooser) and help, checking what each
//! role may and may not see; then one system's pages as an installer (`system.mjs`); a
//! screenshot of every page is saved.

use std::path::PathBuf;
use std::process::Command;

use sunfleet_engine::ids::Serial;
use sunfleet_fixtures::world::devices::new_site_micro_serial;

use crate::demo::{PASSWORD, SiteRun, enter_site, simulate_site, start_demo_for};
use crate::http::User;
use crate::{free_tcp_port, interrupt};

/// The hand-entered site of the system walk, where a microinverter is provisioned.
const SITE_GATEWAY: &str = "121990000789";
const SITE_MICROS: u32 = 3;

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SUNFLEET_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.exists(),
        "the browser test needs Chromium: `apt-get install chromium` (.ci/run does), or set \
         SUNFLEET_CHROMIUM to its executable"
    );
    path
}

fn browser_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser test needs playwright-core: run `bash scripts/test` once (it runs `npm ci` \
         in tests/browser), or `npm ci` there"
    );
    dir
}

/// Runs `tests/browser/{script}` against a fresh demo with `history_days` of history; it
/// saves at least `min_screenshots` screenshots in `$SUNFLEET_SCREENSHOTS/{script}` (or the
/// temporary folder). With `site`, a site is entered and its gateway simulated in daylight
/// first, and the script gets `{"site": id, "gateway": serial, "new_micro": serial}` as its
/// last argument (a microinverter to provision there).
fn walk(script: &str, history_days: u32, min_screenshots: usize, site: bool) {
    let chromium = chromium();
    let dir = browser_dir();
    let data = tempfile::tempdir().unwrap();
    let demo_data = data.path().join("demo");
    let demo = start_demo_for(&demo_data, free_tcp_port(), 12, history_days);
    let mut site_argument = None;
    let mut _site_gateway = None;
    if site {
        let mut admin = User::sign_in(&demo.portal, &demo.accounts["installer administrator"]);
        let id = enter_site(
            &mut admin,
            "Browser Provisioning Site",
            SITE_GATEWAY,
            SITE_MICROS,
        );
        _site_gateway = Some(simulate_site(
            &demo,
            &demo_data,
            &SiteRun {
                duration_s: 1_200,
                ..SiteRun::in_the_sun(SITE_GATEWAY, SITE_MICROS)
            },
        ));
        let new_micro = new_site_micro_serial(SITE_GATEWAY.parse::<Serial>().unwrap(), 20);
        site_argument = Some(
            serde_json::json!({
                "site": id,
                "gateway": SITE_GATEWAY,
                "new_micro": new_micro.to_string(),
            })
            .to_string(),
        );
    }
    let screenshots = std::env::var_os("SUNFLEET_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sunfleet-portal-screenshots"))
        .join(script.trim_end_matches(".mjs"));
    let _ = std::fs::remove_dir_all(&screenshots);
    let output = Command::new("node")
        .arg(dir.join(script))
        .arg(format!("http://{}", demo.portal))
        .arg(serde_json::to_string(&demo.accounts).unwrap())
        .arg(PASSWORD)
        .arg(&screenshots)
        .arg(&chromium)
        .args(site_argument)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let saved = std::fs::read_dir(&screenshots).unwrap().count();
    assert!(
        saved >= min_screenshots,
        "{saved} screenshots in {}",
        screenshots.display()
    );
    eprintln!("{}", stdout.trim());
    interrupt(&demo.server.0);
}

#[test]
fn every_role_walks_the_portal_in_chromium() {
    walk("portal.mjs", 1, 20, false);
}

#[test]
fn an_installer_walks_a_systems_pages_in_chromium() {
    // The production check judges 30 days of history: the estimate step needs them.
    walk("system.mjs", 32, 20, true);
}
