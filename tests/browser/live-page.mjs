// The live operations page (GET /) in headless Chromium, against a real server with an
// API token: the page loads and goes live, a conversation opened over the API appears
// and is assigned on the page within a second, the lookup finds it, the page asks for
// the token when it has none, and it loads nothing from anywhere but the server. A
// screenshot is written as a test artifact.
//
// Usage: node live-page.mjs   (SWITCHBOARD_URL, SWITCHBOARD_TOKEN, CHROMIUM and
// SCREENSHOT set by .ci/browser.sh, which starts the server)
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

const base = process.env.SWITCHBOARD_URL ?? "http://127.0.0.1:18090";
const token = process.env.SWITCHBOARD_TOKEN ?? "";
const screenshot = process.env.SCREENSHOT ?? "target/browser/live-page.png";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function check(ok, what) {
  if (!ok) throw new Error("FAILED: " + what);
  console.log("ok   " + what);
}

async function api(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root in CI: Chromium's sandbox needs user namespaces it may not have.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  timeout: 60_000,
});
let failed = false;
try {
  await api("PUT", "/v1/agents/ann", { skills: ["general"], max_slots: 3 });
  await api("POST", "/v1/agents/ann/status", { status: "online" });
  await api("PUT", "/v1/agents/bob", { skills: ["general", "billing"], max_slots: 2 });
  await api("POST", "/v1/agents/bob/status", { status: "away", reason: "lunch" });

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const elsewhere = [];
  const errors = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) elsewhere.push(r.url());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });

  await page.goto(`${base}/#token=${encodeURIComponent(token)}`);
  await page.waitForFunction(() => document.querySelector("#stream")?.textContent === "live", null, {
    timeout: 10_000,
  });
  check(true, "the page loads and follows the event stream");
  await page.waitForSelector('#agents tr[data-key="ann"] td.status-online', { timeout: 5_000 });
  await page.waitForSelector('#queues tr[data-key="general"]', { timeout: 5_000 });
  check(true, "queues and agents are shown from the first read");
  check(
    (await page.textContent('#agents tr[data-key="bob"]')).includes("away (lunch)"),
    "an away agent shows its reason",
  );

  const opened = Date.now();
  await api("POST", "/v1/conversations", { conversation_id: "browser-1", consumer_id: "u1", skill: "general" });
  await page.waitForSelector('#conversations tr[data-key="browser-1"] td.state-assigned', { timeout: 1_000 });
  const took = Date.now() - opened;
  check(true, `the conversation opened over the API is assigned on the page in ${took} ms (limit 1000 ms)`);
  check(
    (await page.textContent('#conversations tr[data-key="browser-1"]')).includes("ann"),
    "the page names the agent it went to",
  );
  await page.waitForFunction(
    () => document.querySelector('#agents tr[data-key="ann"]')?.children[4]?.textContent === "1",
    null,
    { timeout: 2_000 },
  );
  check(true, "the agent's row counts the conversation (refreshed by the event, not a poll)");
  await page.waitForFunction(
    () => document.querySelector('#queues tr[data-key="general"]')?.children[5]?.textContent === "1",
    null,
    { timeout: 2_000 },
  );
  check(true, "the skill's row counts it assigned");

  await page.fill("#lookup-id", "browser-1");
  await page.click("#lookup button");
  await page.waitForFunction(
    () => document.querySelector("#lookup-result")?.textContent.includes("assigned with ann"),
    null,
    { timeout: 2_000 },
  );
  check(true, "the lookup finds the conversation");

  // A second conversation waits (ann's capacity is not the question: billing has no
  // online agent), so the queue shows a backlog.
  await api("POST", "/v1/conversations", { conversation_id: "browser-2", consumer_id: "u2", skill: "billing" });
  await page.waitForSelector('#conversations tr[data-key="browser-2"] td.state-queued', { timeout: 1_000 });
  await page.waitForFunction(
    () => document.querySelector('#queues tr[data-key="billing"]')?.children[2]?.textContent === "1",
    null,
    { timeout: 2_000 },
  );
  check(true, "a conversation with no agent to take it waits in its queue on the page");

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  check(true, `screenshot written: ${screenshot}`);

  check(elsewhere.length === 0, `the page loads nothing from elsewhere (${elsewhere.join(", ") || "none"})`);
  check(errors.length === 0, `no script errors (${errors.join("; ") || "none"})`);

  // Without the token, the page asks for it and shows nothing.
  const stranger = await browser.newContext();
  const p2 = await stranger.newPage();
  await p2.goto(`${base}/`);
  await p2.waitForSelector("#token-form:not([hidden])", { timeout: 5_000 });
  check((await p2.$$("#agents tbody tr")).length === 0, "without the token the page asks for it and shows no agent");
  await p2.fill("#token", token);
  await p2.click("#token-form button");
  await p2.waitForSelector('#agents tr[data-key="ann"]', { timeout: 5_000 });
  check(true, "with the token given in the form, it shows the agents");
} catch (e) {
  failed = true;
  console.error(String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
