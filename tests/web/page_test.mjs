// End-to-end test of the dosod web page in Debian's headless Chromium, driven by playwright-core.
//
//   node tests/web/page_test.mjs BASE_URL IMAGE_PATH CLASSES SCREENSHOT_PATH [--expect-error TEXT]
//
// Loads BASE_URL, sets #file to IMAGE_PATH, types CLASSES into #classes, clicks #detect and waits
// (at most 30 s) until #view[data-boxes] > 0. Then it saves a screenshot, prints one JSON line
// {"boxes": N, "status": "..."} and exits 0. With --expect-error TEXT it instead waits until
// #status shows an error containing TEXT (to check the page's error path), and succeeds then.
// On a timeout or any failure it still saves a screenshot, prints the status text and the
// page's console errors, and exits 1. CHROMIUM=/path overrides /usr/bin/chromium.
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const WAIT_MS = 30_000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function usage(message) {
  console.error(`${message}\nusage: node page_test.mjs BASE_URL IMAGE_PATH CLASSES SCREENSHOT_PATH [--expect-error TEXT]`);
  process.exit(2);
}

const argv = process.argv.slice(2);
let expectError = null;
const flag = argv.indexOf("--expect-error");
if (flag !== -1) {
  if (flag + 1 >= argv.length) usage("--expect-error needs a TEXT");
  expectError = argv[flag + 1];
  argv.splice(flag, 2);
}
if (argv.length !== 4) usage(`expected 4 arguments, got ${argv.length}`);
const [baseUrl, imageArg, classes, shotArg] = argv;
const imagePath = resolve(imageArg);
const shotPath = resolve(shotArg);
if (!existsSync(imagePath)) usage(`no such image: ${imagePath}`);
if (!existsSync(CHROMIUM)) usage(`no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);

const userDataDir = mkdtempSync(join(tmpdir(), "dosod-page-test-"));
const consoleErrors = [];
let context;
let page;
let exitCode = 1;

async function statusText() {
  try { return (await page.locator("#status").textContent({ timeout: 2000 })) ?? ""; } catch { return ""; }
}

async function screenshot() {
  try { await page.screenshot({ path: shotPath, fullPage: true, timeout: 10_000 }); } catch (err) {
    console.error(`screenshot failed: ${err.message}`);
  }
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: WAIT_MS,
  });
  page = context.pages()[0] ?? await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(`pageerror: ${err.message}`));

  await page.goto(baseUrl, { waitUntil: "load", timeout: WAIT_MS });
  // Type the classes before choosing the file: the page detects at once on an image change.
  await page.fill("#classes", classes);
  await page.setInputFiles("#file", imagePath);
  await page.click("#detect");

  if (expectError === null) {
    // Done when boxes are drawn; stop early if the page reports an error.
    const handle = await page.waitForFunction(() => {
      const boxes = Number(document.getElementById("view")?.dataset.boxes || 0);
      const state = document.getElementById("status")?.dataset.state;
      return boxes > 0 || state === "error" ? { boxes, state } : false;
    }, null, { timeout: WAIT_MS, polling: 100 });
    const { boxes, state } = await handle.jsonValue();
    if (state === "error" || boxes <= 0) throw new Error(`page reported an error`);
    await screenshot();
    console.log(JSON.stringify({ boxes, status: await statusText() }));
    exitCode = 0;
  } else {
    await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "error",
      null, { timeout: WAIT_MS, polling: 100 });
    const status = await statusText();
    const boxes = Number(await page.getAttribute("#view", "data-boxes"));
    await screenshot();
    if (!status.includes(expectError)) throw new Error(`status lacks expected error text ${JSON.stringify(expectError)}`);
    console.log(JSON.stringify({ boxes, status }));
    exitCode = 0;
  }
} catch (err) {
  console.error(`FAILED: ${err.message.split("\n")[0]}`);
  if (page) {
    await screenshot();
    console.error(`status: ${JSON.stringify(await statusText())}`);
  }
  console.error(`console errors: ${JSON.stringify(consoleErrors)}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
