// Walks one system's pages in headless Chromium as an installer: every tab and settings
// section, with a screenshot of each; an estimate changed and the status following; the array view's playback and cell details; the
// graph's zoom and hover readout; each report downloaded and checked against SQL; live
// figures refreshing; a kiosk link opened signed out. No page may log an error (CSP
// violations included).
// A microinverter is provisioned through the Devices tab on a hand-entered site whose
// gateway reports, and the walk waits for its task to succeed and the unit to appear.
// Usage: node system.mjs BASE_URL ACCOUNTS_JSON PASSWORD SCREENSHOT_DIR CHROMIUM SITE_JSON
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [base, accountsJson, password, shots, executablePath, siteJson] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
const site = JSON.parse(siteJson);
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
let pagesSeen = 0;
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (message) => { if (message.type() === "error") problems.push(`${page.url()}: ${message.text()}`); });
  page.on("pageerror", (error) => problems.push(`${page.url()}: ${error}`));
  async function shot(name) {
    await page.screenshot({ path: join(shots, `system-${name}.png`), fullPage: true });
    pagesSeen += 1;
  }
  await page.goto(`${base}/signin`);
  await page.fill("input[name=email]", accounts["installer administrator"]);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  const csrf = await page.locator("input[name=csrf_token]").first().inputValue();
  async function sql(text) {
    return page.evaluate(async ([text, csrf]) => {
      const answer = await fetch("/api/sql?format=json", {
        method: "POST",
        headers: { "Content-Type": "text/plain", "X-CSRF-Token": csrf },
        body: text,
      });
      if (!answer.ok) throw new Error(`${answer.status}: ${await answer.text()}`);
      return answer.json();
    }, [text, csrf]);
  }
  // A system with a consumption meter, so every report and series has data.
  const visible = new Set((await (await page.request.get(`${base}/api/systems`)).json()).systems.map((s) => s.id));
  const metered = await sql("SELECT DISTINCT CAST(system_id AS BIGINT) AS id FROM meter_readings WHERE meter_kind IN (1, 2) ORDER BY id");
  const system = metered.map((r) => Number(r.id)).find((id) => visible.has(id));
  check(system, "the installer has a metered system");
  const at = (path) => `${base}/systems/${system}${path}`;

  // View: the array, playback through the past days, a cell's details.
  await page.goto(at(""));
  check(await page.locator("table.array-grid td.cell a").count() > 0, "no array cells");
  check((await page.locator("#panel-produced-today").textContent()).trim().length > 0, "side panel");
  await shot("view");
  const firstDay = await page.locator("[data-playback-day]").first().getAttribute("href");
  await page.click("[data-playback]");
  await page.waitForFunction((href) => {
    const active = document.querySelector("[data-playback-day].active");
    return active && active.getAttribute("href") === href;
  }, firstDay, { timeout: 10000 });
  await page.goto(at("?metric=power"));
  await page.locator("table.array-grid td.cell a").first().click();
  await page.waitForSelector("#micro-details #device-summary", { timeout: 10000 });
  await shot("view-details");

  // Devices, a gateway's page with its tasks, and events.
  await page.goto(at("/devices"));
  check(await page.locator("#microinverters table.devices tbody tr").count() > 0, "microinverters listed");
  await shot("devices");
  await page.locator("#gateways table.devices tbody tr a").first().click();
  await page.waitForLoadState("load");
  check(await page.locator("#tasks").count() === 1, "a gateway's task list");
  await shot("device-gateway");
  await page.goto(at("/diagnostics"));
  check(await page.locator("form.diagnostics-form select[name=task] option").count() > 5, "diagnostics tasks");
  await shot("diagnostics");
  await page.goto(at("/events?state=all"));
  check(await page.locator("table.events").count() === 1, "events table");
  await shot("events");

  // Graph: drawn, read out under the cursor, zoomed by the sliders to finer data.
  await page.goto(at("/graph"));
  await page.waitForSelector("#site-chart .u-over");
  check(await page.locator("#site-chart .u-series").count() >= 4, "production, consumption and net series");
  const over = page.locator("#site-chart .u-over");
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width * 0.55, box.y + box.height / 2);
  const readout = await page.locator("#site-chart .u-legend .u-series").nth(1).locator(".u-value").textContent();
  check(readout && readout !== "--", `no hover readout: ${readout}`);
  await shot("graph");
  const before = JSON.parse(await page.locator("#site-chart").getAttribute("data-site-series")).granularity;
  check(before === "hour", `a week is hourly, not ${before}`);
  const end = page.locator("[data-slider=end]");
  const max = Number(await end.getAttribute("max"));
  const response = page.waitForResponse((r) => r.url().includes("/graph.json"));
  await page.locator("[data-slider=start]").evaluate((slider, value) => {
    slider.value = String(value);
    slider.dispatchEvent(new Event("change", { bubbles: true }));
  }, max - 2);
  const zoomed = await (await response).json();
  check(zoomed.granularity === "5m", `zoomed to ${zoomed.granularity}`);
  await page.waitForFunction(() => new URL(location.href).searchParams.get("from") !== null);
  await shot("graph-zoomed");

  // Reports: each downloaded, its rows checked against SQL over the raw readings.
  for (const kind of ["production", "consumption", "meter-data", "monthly-production"]) {
    await page.goto(at(`/reports?kind=${kind}&granularity=day`));
    check(await page.locator("#report-preview tbody tr").count() > 0, `${kind}: empty preview`);
    await shot(`report-${kind}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#report-download")]);
    const text = readFileSync(await download.path(), "utf8").trim().split("\n");
    const header = text[0].split(",");
    const rows = text.slice(1).map((line) => line.split(","));
    check(rows.length > 0, `${kind}: no rows downloaded`);
    if (kind === "meter-data") {
      const [{ n }] = await sql(`SELECT CAST(count(*) AS BIGINT) AS n FROM meter_readings WHERE system_id = ${system}
        AND time >= to_timestamp('${rows[0][0]}') AND time <= to_timestamp('${rows[rows.length - 1][0]}')`);
      check(Number(n) === rows.length, `${kind}: ${rows.length} rows, SQL counts ${n}`);
    } else {
      const column = header.indexOf("energy_produced_wh");
      for (const row of rows.slice(0, 8)) {
        const [{ wh }] = await sql(`SELECT CAST(COALESCE(sum(energy_j), 0) AS DOUBLE) / 3600.0 AS wh FROM readings
          WHERE system_id = ${system} AND time > to_timestamp('${row[0]}') AND time <= to_timestamp('${row[1]}')`);
        check(Math.abs(Number(wh) - Number(row[column])) < 0.01, `${kind} ${row[0]}: ${row[column]} Wh, SQL ${wh}`);
      }
    }
  }
  await page.goto(at("/reports?kind=monthly-production"));
  const [printable] = await Promise.all([context.waitForEvent("page"), page.click("#report-print")]);
  await printable.waitForLoadState("load");
  check(await printable.locator("#monthly-report tbody tr").count() > 0, "printable monthly report");
  await printable.screenshot({ path: join(shots, "system-report-printable.png"), fullPage: true });
  await printable.close();

  // Live status refreshes by itself.
  await page.goto(at("/live"));
  await page.waitForSelector("#live[data-live-updated]", { timeout: 15000 });
  check((await page.locator("[data-live=production]").textContent()).trim().endsWith("W"), "live production");
  await shot("live");

  // Services: an incentive application becomes a request.
  await page.goto(at("/services"));
  await page.fill("#incentive-form input[name=programme]", "Prime à l'autoconsommation");
  await page.fill("#incentive-form input[name=applicant]", "Jeanne Martin");
  await page.fill("#incentive-form input[name=system_size_kw]", "6.3");
  await Promise.all([page.waitForLoadState("load"), page.click("#incentive-form button[type=submit]")]);
  check(await page.locator("#filed-number").count() === 1, "no request number");
  await shot("services");

  // Kiosk: a link opened signed out, in a separate browser context.
  await page.goto(at("/kiosk"));
  await page.fill("input[name=name]", "Town hall screen");
  await Promise.all([page.waitForLoadState("load"), page.click("form[action$='/kiosk/links'] button")]);
  const link = (await page.locator("#kiosk-link").textContent()).trim();
  await shot("kiosk");
  const visitor = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const kiosk = await visitor.newPage();
  kiosk.on("console", (message) => { if (message.type() === "error") problems.push(`kiosk: ${message.text()}`); });
  await kiosk.goto(link);
  check(await kiosk.locator("#kiosk-week").count() === 1, "kiosk figures");
  await kiosk.waitForSelector(".chart .u-over");
  check(await kiosk.locator("a[href='/signout'], form[action='/signout']").count() === 0, "kiosk is signed out");
  await kiosk.screenshot({ path: join(shots, "system-kiosk-public.png"), fullPage: true });
  await visitor.close();

  // Settings: every section; an estimate far above production makes a production issue,
  // a low one clears it (the save asks for a re-check of that system).
  const systems = (await (await page.request.get(`${base}/api/systems`)).json()).systems;
  const judged = systems.find((s) => s.stage === "ready" && s.status === "normal" && (s.energy_past_7_days_wh || 0) > 0);
  check(judged, "a ready, normal, producing system");
  for (const [path, name] of [["", "overview"], ["/labor", "labor"], ["/references", "references"], ["/estimate", "estimate"], ["/arrays", "arrays"], ["/arrays/builder", "builder"]]) {
    await page.goto(`${base}/systems/${judged.id}/settings${path}`);
    check(await page.locator(".settings-nav").count() === 1, `settings${path}`);
    await shot(`settings-${name}`);
  }
  async function saveEstimate(kwh) {
    await page.goto(`${base}/systems/${judged.id}/settings/estimate`);
    await page.check("input[name=estimate_level][value=system]");
    for (let month = 1; month <= 12; month++) await page.fill(`input[name=estimate_${month}]`, kwh);
    await page.check("input[name=threshold_days][value='30']");
    await Promise.all([page.waitForLoadState("load"), page.click("form.settings-form button[type=submit]")]);
    for (let tries = 0; tries < 30; tries++) {
      const status = await page.locator("#current-status").getAttribute("data-status");
      if ((kwh === "1000000") === (status === "power")) return status;
      await page.waitForTimeout(1000);
      await page.reload();
    }
    throw new Error(`the status did not follow an estimate of ${kwh} kWh`);
  }
  await saveEstimate("1000000");
  await shot("settings-estimate-production-issue");
  await saveEstimate("0.1");

  // Provisioning: on the site whose gateway reports, the form queues a task; the unit is
  // listed as being provisioned, then among the microinverters once the gateway reports it.
  const siteAt = (path) => `${base}/systems/${site.site}${path}`;
  const deadline = Date.now() + 240000;
  async function waitFor(what, test) {
    for (;;) {
      if (await test()) return;
      check(Date.now() < deadline, `timed out waiting for ${what}`);
      await page.waitForTimeout(2000);
    }
  }
  await waitFor("the site's gateway to report", async () => {
    const [{ n }] = await sql(`SELECT CAST(count(*) AS BIGINT) AS n FROM devices WHERE system_id = ${site.site} AND kind = 'microinverter'`);
    return Number(n) > 0;
  });
  await page.goto(siteAt("/devices"));
  await page.fill(".provision-form input[name=serial]", site.new_micro);
  await Promise.all([page.waitForLoadState("load"), page.click(".provision-form button[type=submit]")]);
  check((await page.locator("#pending tr.pending-device").textContent()).includes(site.new_micro), "the unit is being provisioned");
  await shot("devices-provisioning");
  await waitFor("the provisioned microinverter to be listed", async () => {
    await page.goto(siteAt("/devices?sort=serial&dir=desc"));
    return (await page.locator("#microinverters table.devices").textContent()).includes(site.new_micro);
  });
  check(await page.locator("#pending").count() === 0, "nothing left being provisioned");
  await page.locator("#gateways table.devices tbody tr a").first().click();
  await page.waitForLoadState("load");
  const task = page.locator("#tasks table.tasks tbody tr").first();
  check((await task.textContent()).includes(site.new_micro) && (await task.locator(".device-status-normal").count()) === 1,
    "the provisioning task succeeded");
  await shot("devices-provisioned");

  check(problems.length === 0, `console errors:\n${problems.join("\n")}`);
  await context.close();
} finally {
  await browser.close();
}
console.log(`ok: ${pagesSeen} system page screenshots in ${shots}`);
