// Heron's dashboard in a real browser. Starts the `heron` binary (SQLite in a temporary
// folder, the repository's example policies), a fake OpenID Connect provider (idp.mjs) and
// Debian's Chromium through playwright-core (never a downloaded browser), then walks
// through an analyst's work. Screenshots go to target/screenshots/ (HERON_SCREENSHOTS
// overrides). The server is always stopped; on a failure its log is printed and its data
// folder kept.
//
//   npm test                          # builds heron with cargo first
//   HERON_BIN=target/debug/heron npm test
//   CHROMIUM=/usr/bin/chromium npm test

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { USER, startIdp } from "./idp.mjs";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const screenshots = resolve(repo, process.env.HERON_SCREENSHOTS || "target/screenshots");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const TOKEN = "browser-test-token";
const CLIENT = { clientId: "heron", clientSecret: randomBytes(12).toString("hex") };
const fixture = (name) => readFileSync(join(repo, "policies/testdata/detect/guardduty", name), "utf8");

// ---------------------------------------------------------------------------------------
// The server

function heronBinary() {
  if (process.env.HERON_BIN) {
    return resolve(repo, process.env.HERON_BIN);
  }
  console.log("# building heron (cargo build -p heron-cli)");
  const built = spawnSync("cargo", ["build", "--quiet", "-p", "heron-cli", "--bin", "heron"], {
    cwd: repo,
    stdio: "inherit",
  });
  if (built.status !== 0) {
    throw new Error("cargo build failed");
  }
  return join(process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, "target"), "debug/heron");
}

function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

async function startHeron(bin, idp) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dataDir = mkdtempSync(join(tmpdir(), "heron-browser-"));
  // Only our settings: nothing of the caller's HERON_* (a model, a database…) leaks in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HERON_")));
  Object.assign(env, {
    RUST_LOG: "info",
    NO_COLOR: "1",
    HERON_AUTH__TOKENS: JSON.stringify([TOKEN]),
    HERON_OIDC_ISSUER: idp.issuer,
    HERON_OIDC_CLIENT_ID: CLIENT.clientId,
    HERON_OIDC_CLIENT_SECRET: CLIENT.clientSecret,
    HERON_OIDC_REDIRECT_URL: `${base}/auth/callback`,
    HERON_SESSION_SECRET: randomBytes(32).toString("hex"),
    HERON_POLICY_WATCH_DEBOUNCE_MS: "0",
  });
  const log = [];
  const child = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`, "--data-dir", dataDir,
    "--policies", join(repo, "policies")], { cwd: dataDir, env, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (chunk) => log.push(chunk.toString()));
  }
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      throw new Error(`heron exited at start (${JSON.stringify(exited)}):\n${log.join("")}`);
    }
    try {
      const ready = await fetch(`${base}/readyz`);
      if (ready.ok) {
        break;
      }
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      throw new Error(`heron was not ready within 60 s:\n${log.join("")}`);
    }
    await sleep(200);
  }
  return {
    base,
    dataDir,
    log,
    async stop() {
      if (exited) {
        return;
      }
      child.kill("SIGTERM");
      for (let i = 0; i < 50 && !exited; i += 1) {
        await sleep(100);
      }
      if (!exited) {
        child.kill("SIGKILL");
      }
    },
  };
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function api(heron, path, options = {}) {
  const response = await fetch(`${heron.base}${path}`, {
    ...options,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...options.headers },
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${options.method || "GET"} ${path}: ${response.status} ${text}`);
  }
  return text ? JSON.parse(text) : null;
}

/** Posts a GuardDuty finding to the webhook; resolves to the ticket it opened. */
async function alertOpensTicket(heron, body) {
  const before = new Set((await api(heron, "/api/v1/tickets?limit=500")).items.map((t) => t.id));
  await api(heron, "/hooks/alert/raw/guardduty", { method: "POST", body });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const fresh = (await api(heron, "/api/v1/tickets?limit=500")).items.filter((t) => !before.has(t.id));
    if (fresh.length > 0) {
      return fresh[0];
    }
    await sleep(200);
  }
  throw new Error("the alert opened no ticket within 30 s");
}

// ---------------------------------------------------------------------------------------
// The steps

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** Marks the page; a full reload loses the mark. */
const mark = (page) => page.evaluate(() => { window.heronNoReload = true; });
const stillMarked = async (page, what) =>
  check(await page.evaluate(() => window.heronNoReload === true), `${what} reloaded the whole page`);

async function signIn(page, heron, path) {
  await page.goto(`${heron.base}${path}`);
  await page.waitForURL(`${heron.base}${path}`);
  const who = (await page.textContent("header .who")) || "";
  check(who.trim() === USER.email, `signed in as ${JSON.stringify(who)}, not ${USER.email}`);
}

async function main() {
  mkdirSync(screenshots, { recursive: true });
  const bin = heronBinary();
  const idp = await startIdp(CLIENT);
  let heron = null;
  let browser = null;
  let page = null;
  const results = [];
  const pageErrors = [];
  let failed = false;
  const step = async (name, body) => {
    if (failed) {
      results.push(`skip - ${name}`);
      return;
    }
    const started = Date.now();
    try {
      await body();
      results.push(`ok - ${name} (${Date.now() - started} ms)`);
      console.log(`ok - ${name}`);
    } catch (error) {
      failed = true;
      results.push(`not ok - ${name}`);
      console.log(`not ok - ${name}\n  ${String(error.stack || error).replace(/\n/g, "\n  ")}`);
      if (page) {
        const shot = join(screenshots, "failure.png");
        await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
        console.log(`  page: ${page.url()}\n  screenshot: ${shot}`);
      }
    }
  };

  try {
    heron = await startHeron(bin, idp);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      // As the machine's notes say: no sandbox as root, and nothing that reaches out.
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`${page.url()}: ${error.message}`));
    let ticket = null;
    const comment = `Checked with the owner <b>${Date.now()}</b>: a scanner in staging.`;

    await step("an alert posted to the webhook opens a ticket", async () => {
      ticket = await alertOpensTicket(heron, fixture("ec2_c2_dns.json"));
    });

    await step("signing in goes through the identity provider and back to the queue", async () => {
      await signIn(page, heron, "/");
      check(idp.requests.some((r) => r === "POST /token"), "the code was never exchanged at the provider");
      await page.waitForSelector(`tr[data-ticket="${ticket.id}"]`);
      await page.screenshot({ path: join(screenshots, "queue.png"), fullPage: true });
    });

    await step("the ticket opens from the queue", async () => {
      await page.click(`tr[data-ticket="${ticket.id}"] a`);
      await page.waitForURL(`${heron.base}/tickets/${ticket.id}`);
      check((await page.textContent("h1")).includes(ticket.title), "the ticket's title is its heading");
      await page.screenshot({ path: join(screenshots, "ticket.png"), fullPage: true });
    });

    await step("a comment is added without a full reload", async () => {
      await mark(page);
      await page.fill("#ticket-actions textarea[name=text]", comment);
      await page.click("#ticket-actions form:has(input[value=comment]) button");
      await page.waitForFunction(
        (text) => document.getElementById("ticket-conversation").textContent.includes(text), comment);
      await stillMarked(page, "commenting");
    });

    await step("the ticket is resolved with a conclusion without a full reload", async () => {
      await page.selectOption("#ticket-actions select[name=conclusion]", "false_positive");
      await page.fill("#ticket-actions input[name=reason]", "scanner in staging");
      await page.click("#ticket-actions form:has(input[value=resolve]) button");
      await page.waitForFunction(
        () => document.getElementById("ticket-facts").textContent.includes("resolved (false_positive)"));
      await stillMarked(page, "resolving");
      check((await page.textContent("#action-status")).includes("Done"), "the change is announced");
      check(await page.isVisible("#ticket-actions form:has(input[value=reopen])"), "a resolved ticket offers to reopen");
    });

    await step("the REST API shows the ticket resolved with that conclusion and the comment", async () => {
      const stored = await api(heron, `/api/v1/tickets/${ticket.id}`);
      check(stored.status === "resolved", `status ${stored.status}`);
      check(stored.conclusion === "false_positive", `conclusion ${stored.conclusion}`);
      check(stored.reason === "scanner in staging", `reason ${stored.reason}`);
      const comments = await api(heron, `/api/v1/tickets/${ticket.id}/comments`);
      check(comments.some((c) => c.text === comment && c.author === USER.email && c.source === "web"),
        `the comment is not there under ${USER.email}: ${JSON.stringify(comments)}`);
      check(comments.some((c) => c.source === "system" && c.author === USER.email && c.text.includes("resolved")),
        "the resolution is recorded under the signed-in user");
    });

    await step("a new alert appears in the open queue without a reload", async () => {
      await page.goto(`${heron.base}/?status=open`);
      await mark(page);
      // The queue listens before the alert arrives.
      await sleep(500);
      const second = await alertOpensTicket(heron, fixture("iam_user_malicious_ip_caller.json"));
      await page.waitForSelector(`tr[data-ticket="${second.id}"]`, { timeout: 20_000 });
      await stillMarked(page, "the live update");
      check(!(await page.isVisible(`tr[data-ticket="${ticket.id}"]`)), "the resolved ticket is not in the open queue");
      check((await page.textContent("#action-status")).includes("new ticket"), "the arrival is announced");
    });

    await step("the metrics page draws its charts", async () => {
      await page.goto(`${heron.base}/stats`);
      const charts = await page.locator("svg[role=img]").count();
      check(charts === 8, `${charts} charts`);
      const label = await page.getAttribute("#alerts-per-day svg", "aria-label");
      check(label.includes("2 in all"), `alerts chart: ${label}`);
      await page.screenshot({ path: join(screenshots, "metrics.png"), fullPage: true });
    });

    await step("without JavaScript the same forms work with full page loads", async () => {
      const plain = await browser.newContext({ javaScriptEnabled: false });
      const noScript = await plain.newPage();
      try {
        await signIn(noScript, heron, `/tickets/${ticket.id}`);
        await noScript.click("#ticket-actions form:has(input[value=reopen]) button");
        await noScript.waitForURL(`${heron.base}/tickets/${ticket.id}`);
        check((await noScript.textContent("#ticket-facts")).includes("open"), "reopened");
        const stored = await api(heron, `/api/v1/tickets/${ticket.id}`);
        check(stored.status === "open" && stored.conclusion === null, `status ${stored.status}`);
      } finally {
        await plain.close();
      }
    });

    await step("no page threw a script error", async () => {
      check(pageErrors.length === 0, pageErrors.join("\n"));
    });
  } catch (error) {
    failed = true;
    console.log(`not ok - setting up\n  ${String(error.stack || error).replace(/\n/g, "\n  ")}`);
  } finally {
    await browser?.close().catch(() => {});
    await heron?.stop();
    await idp.close();
    if (failed && heron) {
      console.log(`# heron's log (its data is kept in ${heron.dataDir}):`);
      console.log(heron.log.join("").split("\n").slice(-80).join("\n"));
      writeFileSync(join(heron.dataDir, "heron.log"), heron.log.join(""));
    } else if (heron) {
      rmSync(heron.dataDir, { recursive: true, force: true });
    }
  }
  console.log(results.join("\n"));
  console.log(failed ? "# browser tests FAILED" : `# browser tests passed; screenshots in ${screenshots}`);
  process.exit(failed ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
