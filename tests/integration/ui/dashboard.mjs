// Drives the dashboard in Debian's chromium (run by tests/integration/test_ui.py, which
// starts gustd, deploys uitest.say and passes what it made in the environment):
// log in, see the function, call it, see the call and its timeline, see log lines arrive live,
// see the usage plots drawn, the lists of the other pages, and that another workspace's
// token sees none of it. Screenshots of the pages go to $SHOTS. Exits non-zero on the
// first failed check, naming it.
import http from "node:http";
import { chromium } from "playwright-core";

const { BASE, TOKEN_A, TOKEN_B, SHOTS, CHROMIUM } = process.env;
// Playwright's wait for one UI step (ms): the lists refresh every 2 s; a slow ASan
// gustd on a busy 2-core machine may need a few rounds. Not a speed assertion.
const STEP_MS = 30000;
// Console errors and uncaught exceptions of the page, printed when a check fails.
const problems = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// POST .../call with node:http (no Origin header: what a CLI sends), the API being
// the only way data gets into gustd. Resolves to [status, call id, body].
function callFunction(app, fn, input) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${BASE}/v1/functions/${app}/${fn}/call`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN_A}`, "Content-Type": "application/octet-stream" },
    }, (res) => {
      let body = "";
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve([res.statusCode, res.headers["gust-call-id"], body]));
    });
    req.on("error", reject);
    req.end(input);
  });
}

async function login(page, tok) {
  await page.goto(`${BASE}/ui`);
  await page.locator("#token").waitFor({ timeout: STEP_MS });
  await page.fill("#token", tok);
  await page.click("button[type=submit]");
  await page.getByTestId("whoami").waitFor({ timeout: STEP_MS });
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
  console.log("dashboard checks passed");
}

async function run(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  // Text each canvas draws: uPlot draws its axes' labels and tick values on the canvas.
  await ctx.addInitScript(() => {
    window.__drawn = [];
    const orig = CanvasRenderingContext2D.prototype.fillText;
    CanvasRenderingContext2D.prototype.fillText = function (t, ...rest) {
      window.__drawn.push(String(t));
      return orig.call(this, t, ...rest);
    };
  });
  const page = await ctx.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

  // Login page, then the function list.
  await page.goto(`${BASE}/ui`);
  await page.locator("#token").waitFor({ timeout: STEP_MS });
  await shot("login");
  // A wrong token is refused with the API's message, and the login form stays.
  await page.fill("#token", "not-a-token");
  await page.click("button[type=submit]");
  await page.locator(".error", { hasText: "not valid" }).waitFor({ timeout: STEP_MS });
  check(await page.evaluate(() => sessionStorage.length === 0), "a refused token is not kept");
  problems.length = 0; // the browser logs the 401 just asked for
  await login(page, TOKEN_A);
  // The token is in the tab's sessionStorage, and gustd set no cookie.
  check(await page.evaluate((t) => sessionStorage.getItem("gust.token") === t, TOKEN_A), "token in sessionStorage");
  check((await ctx.cookies()).length === 0, "no cookies");
  check((await page.getByTestId("whoami").textContent()).includes("default"), "whoami names workspace default");
  const link = page.locator("[data-testid=fn-link]", { hasText: "say" });
  await link.waitFor({ timeout: STEP_MS });
  check((await page.locator("[data-testid=app] h3").first().textContent()).includes("uitest"), "app uitest listed");
  await shot("functions");

  // The function's page follows its logs; a call made now prints a line that arrives live.
  await link.click();
  await page.locator("[data-testid=log-state]", { hasText: "following" }).waitFor({ timeout: STEP_MS });
  // Called from the page (a POST with the page's Origin), then once through the API.
  await page.fill("#call-input", "ui-42");
  await page.click("text=Spawn call");
  const spawned = page.getByTestId("spawned");
  await spawned.waitFor({ timeout: STEP_MS });
  const uiCallId = (await spawned.textContent()).trim();
  check(uiCallId.startsWith("fc-"), `spawn answered a call id (${uiCallId})`);
  await page.locator("[data-testid=logs]", { hasText: "said-ui-42" }).waitFor({ timeout: STEP_MS });
  await page.locator("[data-testid=call-link]", { hasText: uiCallId }).waitFor({ timeout: STEP_MS });
  const [status, callId, body] = await callFunction("uitest", "say", "api-7\n");
  check(status === 200 && body.includes("result-api-7"), `call answered 200 result-api-7, got ${status} ${body}`);
  await page.locator("[data-testid=logs]", { hasText: "said-api-7" }).waitFor({ timeout: STEP_MS });
  const callLink = page.locator("[data-testid=call-link]", { hasText: callId });
  await callLink.waitFor({ timeout: STEP_MS });
  await shot("function");

  // The call's page: its status and timeline bars.
  await callLink.click();
  await page.locator("[data-testid=call-status]", { hasText: "succeeded" }).waitFor({ timeout: STEP_MS });
  await page.getByTestId("timeline").waitFor({ timeout: STEP_MS });
  const nbars = await page.getByTestId("timeline-bar").count();
  check(nbars >= 2, `timeline shows queued and attempt bars (got ${nbars})`);
  check((await page.getByTestId("timeline").textContent()).includes("attempt 1 on ct-"), "attempt names its container");
  await shot("call");

  // Usage: both plots drawn on their canvases, with axis labels and the function's name.
  await page.goto(`${BASE}/ui#/usage`);
  await page.locator("[data-testid=cost-chart] canvas").waitFor({ timeout: STEP_MS });
  await page.locator("[data-testid=util-chart] canvas").waitFor({ timeout: STEP_MS });
  await page.locator("[data-testid=day-chart] canvas").waitFor({ timeout: STEP_MS });
  await page.locator("[data-testid=util-live-chart] canvas").waitFor({ timeout: STEP_MS });
  const inked = await page.evaluate(() => [...document.querySelectorAll(".chart canvas")].map((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
    return n;
  }));
  check(inked.length === 4 && inked.every((n) => n > 500), `all four charts have drawn pixels (${inked})`);
  const drawn = await page.evaluate(() => window.__drawn);
  const today = new Date().toISOString().slice(5, 10);
  for (const label of ["function", "cost ($)", "utilization (%)", "uitest.say", "day (UTC)", today, "busy (%)", "containers"])
    check(drawn.includes(label), `axis text "${label}" drawn (drew: ${drawn.slice(0, 30)})`);
  check((await page.locator(".u-title").allTextContents()).some((t) => t.includes("Cost per function")), "chart title");
  await shot("usage");

  // The other pages list what the test made through the API.
  await page.goto(`${BASE}/ui#/containers`);
  await page.locator("[data-testid=containers]", { hasText: "uitest.say" }).waitFor({ timeout: STEP_MS });
  await shot("containers");
  await page.goto(`${BASE}/ui#/secrets`);
  await page.locator("[data-testid=secrets]", { hasText: "uisecret" }).waitFor({ timeout: STEP_MS });
  check(!(await page.content()).includes("hunter2-value"), "no secret value on the page");
  await shot("secrets");
  await page.goto(`${BASE}/ui#/volumes`);
  await page.locator("[data-testid=volumes]", { hasText: "uivol" }).waitFor({ timeout: STEP_MS });
  await page.goto(`${BASE}/ui#/images`);
  await page.locator("[data-testid=images], [data-testid=images-empty]").first().waitFor({ timeout: STEP_MS });

  // Another workspace's token: none of workspace default's objects.
  await page.goto(`${BASE}/ui#/functions`);
  await page.click("text=Log out");
  await login(page, TOKEN_B);
  check((await page.getByTestId("whoami").textContent()).includes("wsb"), "whoami names workspace wsb");
  await page.getByTestId("functions-empty").waitFor({ timeout: STEP_MS });
  check(!(await page.content()).includes("uitest"), "workspace wsb's function list has no uitest");
  await shot("other-workspace");
  await page.goto(`${BASE}/ui#/secrets`);
  await page.getByTestId("secrets-empty").waitFor({ timeout: STEP_MS });
  await page.goto(`${BASE}/ui#/usage`);
  await page.locator("text=No usage yet.").waitFor({ timeout: STEP_MS });
  check(!(await page.content()).includes("uitest"), "workspace wsb's usage has no uitest");
  await page.goto(`${BASE}/ui#/fn/uitest/say`);
  await page.locator(".error").first().waitFor({ timeout: STEP_MS });

  // The page ran without script errors or CSP violations (they are console errors),
  // apart from the 404s the last step asked for.
  const unexpected = problems.filter((p) => !p.includes("404"));
  check(!unexpected.length, `no console errors: ${unexpected.join(" | ")}`);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  if (problems.length) console.error(`page console errors:\n${problems.join("\n")}`);
  process.exit(1);
});
