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

    for (const [path, name] of [["/", "dashboard"], ["/?tab=alerts", "dashboard-alerts"], ["/?tab=activations", "dashboard-activations"], ["/alerts", "alerts"], ["/help", "help"], ["/users", "users"], ["/account", "account"]]) {
      const response = await page.goto(`${base}${path}`);
      check(response.status() === 200, `${role} ${path}: ${response.status()}`);
      await shot(page, `${tag}-${name}`);
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
    await Promise.all([page.waitForLoadState("load"), page.click("form.stacked button")]);
    check(await page.locator(".field-error").count() === 1, `${role}: no field error`);
    await shot(page, `${tag}-account-error`);
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
    companyCounts["installer administrator"] === companyCounts["installer"],
    "one company, one fleet",
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
    for (const [path, name] of [["/", "dashboard"], ["/alerts", "alerts"]]) {
      const response = await page.goto(`${base}${path}`);
      check(response.status() === 200, `${role} ${path}: ${response.status()}`);
      await shot(page, `${tag}-${name}`);
    }
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
