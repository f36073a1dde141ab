// End-to-end test of the /streams page in Debian's headless Chromium, driven by playwright-core.
//
//   node tests/web/streams_page_test.mjs BASE_URL CAMERA CLASSES SCREENSHOT_PATH
//
// Loads BASE_URL/streams and waits (at most 30 s each) until CAMERA's section shows the state
// `running`, its live MJPEG view has a decoded frame, and its event list (fed by SSE) has an
// entry, its zones and masks are drawn over the view, and its recent stored events show a
// thumbnail. Then it types CLASSES into the camera's vocabulary box, submits, and waits until the
// status line lists exactly those classes. Prints one JSON line {"state", "image_width",
// "events", "zones", "masks", "thumbnail_width", "vocabulary"} and exits 0; on a timeout or a page error it saves the screenshot,
// prints what it saw and exits 1. CHROMIUM=/path overrides /usr/bin/chromium.
import { chromium } from "playwright-core";

const WAIT_MS = 30_000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const [base, camera, classes, shot] = process.argv.slice(2);
if (!shot) {
  console.error("usage: node streams_page_test.mjs BASE_URL CAMERA CLASSES SCREENSHOT_PATH");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
// Playwright selector for actions; page functions find the section themselves.
const cam = `.cam:has(h2.name:text-is("${camera}"))`;
let step = "load";
try {
  await page.goto(`${base}/streams`);
  step = "running state";
  await page.waitForSelector(`${cam} .state:text-is("running")`, { timeout: WAIT_MS });
  step = "a live frame";
  await page.waitForFunction((name) => [...document.querySelectorAll(".cam")].find((c) => c.querySelector("h2.name").textContent === name)?.querySelector("img").naturalWidth > 0, camera, { timeout: WAIT_MS });
  step = "an event from SSE";
  await page.waitForFunction((name) => [...document.querySelectorAll(".cam")].find((c) => c.querySelector("h2.name").textContent === name)?.querySelectorAll(".events li").length > 0, camera, { timeout: WAIT_MS });
  step = "zones and masks over the view";
  await page.waitForSelector(`${cam} .overlay polygon`, { timeout: WAIT_MS });
  step = "a stored event's thumbnail";
  await page.waitForFunction((name) => [...[...document.querySelectorAll(".cam")].find((c) => c.querySelector("h2.name").textContent === name)?.querySelectorAll(".recent img") ?? []].some((i) => i.naturalWidth > 0), camera, { timeout: WAIT_MS });
  step = "vocabulary change";
  await page.fill(`${cam} .vocab input`, classes);
  await page.click(`${cam} .vocab button`);
  const want = classes.split(",").map((c) => c.trim()).join(", ");
  await page.waitForFunction(([name, w]) => [...document.querySelectorAll(".cam")].find((c) => c.querySelector("h2.name").textContent === name)?.querySelector(".rates").textContent.endsWith(w), [camera, want], { timeout: WAIT_MS });
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  const report = await page.evaluate((name) => {
    const c = [...document.querySelectorAll(".cam")].find((s) => s.querySelector("h2.name").textContent === name);
    return {
      state: c.querySelector(".state").textContent,
      image_width: c.querySelector("img").naturalWidth,
      events: c.querySelectorAll(".events li").length,
      zones: c.querySelectorAll(".overlay polygon.zone").length,
      masks: c.querySelectorAll(".overlay polygon.mask").length,
      thumbnail_width: Math.max(...[...c.querySelectorAll(".recent img")].map((i) => i.naturalWidth)),
      vocabulary: c.querySelector(".rates").textContent.split(" · ").pop(),
    };
  }, camera);
  await page.screenshot({ path: shot });
  console.log(JSON.stringify(report));
  await browser.close();
} catch (e) {
  await page.screenshot({ path: shot }).catch(() => {});
  console.log(`failed at "${step}": ${e.message}; errors: ${JSON.stringify(errors)}`);
  await browser.close();
  process.exit(1);
}
