// Walks the portal in headless Chromium as every demo account, checking what each role may
// and may not see, and saves a screenshot of every page.
// Usage: node portal.mjs BASE_URL ACCOUNTS_JSON PASSWORD SCREENSHOT_DIR CHROMIUM
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, accountsJson, password, shots, executablePath] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
let pagesSeen = 0;
try {
  async function signIn(context, email, secret) {
    const page = await context.newPage();
    await page.goto(`${base}/systems`);
    check(page.url().startsWith(`${base}/signin`), `not sent to sign-in: ${page.url()}`);
    await page.fill("input[name=email]", email);
    await page.fill("input[name=password]", secret);
    await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
    return page;
  }
  async function shot(page, name) {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    pagesSeen += 1;
  }
  async function systemRows(page) {
    return page.locator("main table tbody tr").count();
  }

  // Bad input: a wrong password shows the error and signs nobody in.
  {
    const context = await browser.newContext();
    const page = await signIn(context, accounts["installer"], "not the password");
    check(page.url().startsWith(`${base}/signin`), "a wrong password signed in");
    check(
      (await page.locator("p.error").textContent()).includes("wrong"),
      "no error shown for a wrong password",
    );
    await shot(page, "signin-error");
    await context.close();
  }

  // Installer administrator and installer: the company's fleet.
  const companyCounts = {};
  for (const role of ["installer administrator", "installer"]) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, accounts[role], password);
    check(page.url() === `${base}/systems`, `${role}: not returned to the systems list: ${page.url()}`);
    const tag = role.replaceAll(" ", "-");
    await shot(page, `${tag}-systems`);
    const total = Number((await page.locator(".pager span").textContent()).match(/of (\d+) ·/)[1]);
    companyCounts[role] = total;
    check(total > 0, `${role}: no systems`);

    // Sorting by a column puts a marker on it.
    await page.click("th a:has-text('City')");
    check((await page.locator("th a:has-text('City')").textContent()).includes("▲"), "sort marker");
    // Search by id narrows the list to that system.
    const firstId = (await page.locator("main table tbody tr td span.muted").first().textContent()).slice(1);
    await page.fill("input[name=q]", firstId);
    await Promise.all([page.waitForLoadState("load"), page.click(".search button")]);
    check((await systemRows(page)) >= 1, "search by id found nothing");
    check((await page.locator("main table tbody").textContent()).includes(`#${firstId}`), "search result");
    await shot(page, `${tag}-systems-search`);

    // The column chooser: add Country, and it stays chosen on the next visit.
    await page.goto(`${base}/systems`);
    await page.click("details.chooser summary");
    await page.check("input[name=col][value=country]");
    await Promise.all([page.waitForLoadState("load"), page.click("details.chooser button")]);
    await page.goto(`${base}/systems`);
    check(await page.locator("th a:has-text('Country')").count() === 1, "chosen column missing");

    for (const [path, name] of [["/", "dashboard"], ["/?tab=alerts", "dashboard-alerts"], ["/?tab=activations", "dashboard-activations"], ["/alerts", "alerts"], ["/activations", "activations"], ["/activations?stage=all", "activations-all"], ["/services", "services"], ["/privacy", "privacy"], ["/help", "help"], ["/users", "users"], ["/account", "account"]]) {
      const response = await page.goto(`${base}${path}`);
      check(response.status() === 200, `${role} ${path}: ${response.status()}`);
      await shot(page, `${tag}-${name}`);
    }
    // Activations: "Add new system" from the dashboard; bad input shows field errors and
    // creates nothing; the good form creates the system with its checklist.
    if (role === "installer administrator") {
      await page.goto(`${base}/`);
      await Promise.all([page.waitForLoadState("load"), page.click("a:has-text('Add new system')")]);
      check(page.url() === `${base}/activations/new`, `add new system: ${page.url()}`);
      await page.fill("input[name=latitude]", "123");
      await page.fill("input[name=longitude]", "2");
      await page.fill("textarea[name=gateway_serials]", "12ab");
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Create system')")]);
      check(page.url() === `${base}/activations`, `a bad form went on: ${page.url()}`);
      const errors = await page.locator(".field-error").allTextContents();
      for (const text of ["Enter the system", "A number from -90 to 90.", "not a serial number"]) {
        check(errors.some((e) => e.includes(text)), `no field error "${text}": ${errors}`);
      }
      await shot(page, "activation-form-errors");
      await page.fill("input[name=name]", "Browser Test Residence");
      await page.fill("input[name=owner_given_name]", "Hugo");
      await page.fill("input[name=owner_family_name]", "Bernard");
      await page.fill("input[name=owner_email]", "hugo.bernard@example.org");
      await page.fill("input[name=street_address]", "12 rue du Four");
      await page.fill("input[name=city]", "Nantes");
      await page.fill("input[name=latitude]", "47.22");
      await page.fill("input[name=longitude]", "-1.55");
      await page.fill("textarea[name=gateway_serials]", "121980000001");
      await page.fill("input[name=expected_microinverters]", "10");
      for (let month = 1; month <= 12; month += 1) {
        await page.fill(`input[name=estimate_${month}]`, String(100 + month * 20));
      }
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Create system')")]);
      check(/\/activations\/\d+\?saved=1$/.test(page.url()), `not created: ${page.url()}`);
      check((await page.locator("#stage").textContent()) === "Started", "new system's stage");
      check((await page.locator("#percent").textContent()) === "33", "three of nine steps done");
      check((await page.locator("table.checklist tr.done").count()) === 3, "completed steps");
      await shot(page, "activation-created");
      await page.goto(`${base}/activations?stage=started`);
      check((await page.textContent("main")).includes("Browser Test Residence"), "listed at its stage");
      await shot(page, "activations-started");

      // Invite a user: a bad address is refused in place, a good one shows the link.
      await page.goto(`${base}/users`);
      await page.fill("form[action='/users/invite'] input[name=email]", "nina@localhost");
      await page.fill("form[action='/users/invite'] input[name=family_name]", "Petit");
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Invite')")]);
      check((await page.locator(".field-error").count()) >= 1, "no field error for a bad e-mail");
      await page.fill("form[action='/users/invite'] input[name=email]", "nina.petit@example.org");
      await page.fill("form[action='/users/invite'] input[name=family_name]", "Petit");
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Invite')")]);
      check((await page.locator("#invitation").textContent()).includes("/welcome?token="), "invitation link");
      check((await page.locator("h2#subcontractors").count()) === 1, "subcontractors section");
      await shot(page, "users-invited");
    }
    // The dashboard draws the fleet's production with the vendored chart library, and its
    // tabs swap only the systems box (htmx); nothing breaks the content security policy.
    {
      const problems = [];
      page.on("console", (message) => { if (message.type() === "error") problems.push(message.text()); });
      page.on("pageerror", (error) => problems.push(String(error)));
      await page.goto(`${base}/`);
      await page.waitForSelector(".chart canvas", { timeout: 10000 });
      await page.click(".tabs a:has-text('Alerts')");
      await page.waitForFunction(() => document.querySelector("#systems-card .tabs a.active")?.textContent.startsWith("Alerts"));
      check(page.url().includes("tab=alerts"), `tab not in the address: ${page.url()}`);
      check((await page.locator(".chart canvas").count()) === 1, "the chart stays when the box changes");
      check(problems.length === 0, `${role}: browser errors: ${problems.join(" | ")}`);
      await shot(page, `${tag}-dashboard-chart`);
    }
    // Only administrators manage users and read the audit log.
    await page.goto(`${base}/users`);
    const manages = (await page.locator("button:has-text('Deactivate')").count()) > 0;
    check(manages === (role === "installer administrator"), `${role}: user management shown: ${manages}`);
    check((await page.locator("h2:has-text('Audit log')").count() > 0) === manages, `${role}: audit log`);
    // A password change with a wrong current password shows the field error.
    await page.goto(`${base}/account`);
    await page.fill("input[name=current_password]", "not my password");
    await page.fill("input[name=new_password]", "another long password");
    await page.fill("input[name=confirm_password]", "another long password");
    await Promise.all([page.waitForLoadState("load"), page.click("form[action='/account/password'] button")]);
    check(await page.locator(".field-error").count() === 1, `${role}: no field error`);
    await shot(page, `${tag}-account-error`);
    // French, chosen on the Account page: words, dates and numbers follow; then back.
    if (role === "installer") {
      await page.goto(`${base}/account`);
      await page.selectOption("select[name=language]", "fr");
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Save language')")]);
      await page.goto(`${base}/`);
      check((await page.getAttribute("html", "lang")) === "fr", "the page says it is French");
      check((await page.locator("header nav a.active").textContent()) === "Tableau de bord", "French navigation");
      check((await page.textContent("main")).includes("Production du parc"), "French dashboard");
      check(/\d+,\d kWh/.test(await page.textContent("main")), "a decimal comma in energies");
      await shot(page, "installer-dashboard-fr");
      await page.goto(`${base}/systems`);
      check((await page.locator("h1").textContent()) === "Systèmes", "French systems list");
      await shot(page, "installer-systems-fr");
      await page.goto(`${base}/activations?stage=all`);
      await shot(page, "installer-activations-fr");
      await page.goto(`${base}/users`);
      check(/\d{2}\/\d{2}\/\d{4} \d{2}:\d{2} UTC/.test(await page.textContent("main")), "French dates");
      await page.goto(`${base}/help`);
      check((await page.textContent("main")).includes("États des systèmes"), "French help");
      await page.goto(`${base}/account`);
      await page.selectOption("select[name=language]", "en");
      await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Enregistrer la langue')")]);
      check((await page.locator("h1").textContent()) === "Account", "back to English");
    }
    // Paging, when the list has more than one page.
    await page.goto(`${base}/systems`);
    if (await page.locator("a[rel=next]").count()) {
      await page.click("a[rel=next]");
      check((await page.locator(".pager span").textContent()).includes("page 2"), "paging");
    }
    // Phone-sized screen: the dashboard still renders its systems box.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/`);
    check(await page.locator("#systems-box").isVisible(), "dashboard on a phone");
    await shot(page, `${tag}-dashboard-phone`);
    // Sign out: the next page asks to sign in again.
    await page.click("button:has-text('Sign out')");
    await page.goto(`${base}/`);
    check(page.url().startsWith(`${base}/signin`), "still signed in after sign-out");
    await context.close();
  }
  check(
    companyCounts["installer administrator"] + 1 === companyCounts["installer"],
    "one company, one fleet (with the system the administrator added)",
  );

  // Subcontractor: only granted systems; owner: one system.
  for (const [role, most] of [["subcontractor", companyCounts["installer"]], ["system owner (read-only)", 1]]) {
    const context = await browser.newContext();
    const page = await signIn(context, accounts[role], password);
    const tag = role.split(" ")[0];
    const total = Number((await page.locator(".pager span").textContent()).match(/of (\d+) ·/)[1]);
    check(total >= 1, `${role}: no systems`);
    if (role.startsWith("system owner")) check(total === 1, `owner sees ${total} systems`);
    await shot(page, `${tag}-systems`);
    for (const [path, name] of [["/", "dashboard"], ["/alerts", "alerts"], ["/activations?stage=all", "activations"], ["/services", "services"]]) {
      const response = await page.goto(`${base}${path}`);
      check(response.status() === 200, `${role} ${path}: ${response.status()}`);
      await shot(page, `${tag}-${name}`);
    }
    check(!(await page.textContent("main")).includes("Browser Test Residence"), `${role} sees another's new system`);
    const refused = await page.goto(`${base}/activations/new`);
    check(refused.status() === 403, `${role} may add systems: ${refused.status()}`);
    await context.close();
  }

  // Platform administrator: every company's systems, no company administration.
  {
    const context = await browser.newContext();
    const page = await signIn(context, accounts["platform administrator"], password);
    const total = Number((await page.locator(".pager span").textContent()).match(/of (\d+) ·/)[1]);
    check(total >= companyCounts["installer"], `platform administrator sees ${total} systems`);
    await shot(page, "platform-admin-systems");
    const users = await page.goto(`${base}/users`);
    check(users.status() === 403, `platform administrator /users: ${users.status()}`);
    await context.close();
  }

  // Analyst: SQL only; the pages say so.
  {
    const context = await browser.newContext();
    const page = await signIn(context, accounts["analyst (SQL only)"], password);
    const response = await page.goto(`${base}/`);
    check(response.status() === 403, `analyst dashboard: ${response.status()}`);
    check((await page.textContent("body")).includes("SQL"), "the refusal explains");
    await shot(page, "analyst-refused");
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(`ok: ${pagesSeen} screenshots in ${shots}`);
