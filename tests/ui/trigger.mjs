// Log into the Airflow UI, open user_automation, trigger it through the form
// with a count, and wait until the UI shows the run succeeded. Keeps a
// screenshot. Env: AIRFLOW_URL, AIRFLOW_USER, AIRFLOW_PASSWORD, UI_MODULES
// (where playwright-core is installed), COUNT, SCREENSHOT.
import { createRequire } from 'node:module';

const require = createRequire(process.env.UI_MODULES + '/');
const { chromium } = require('playwright-core');
const base = process.env.AIRFLOW_URL;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  // No background traffic: this machine has no internet.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
try {
  await page.goto(base + '/');
  await page.locator('input[name="username"]').fill(process.env.AIRFLOW_USER);
  await page.locator('input[name="password"]').fill(process.env.AIRFLOW_PASSWORD);
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => !u.pathname.startsWith('/auth'), { timeout: 30000 });

  await page.goto(base + '/dags/user_automation');
  await page.locator('button:has-text("Trigger")').first().click();
  const dialog = page.getByRole('dialog');
  await dialog.locator('input[name="element_count"]').fill(process.env.COUNT);
  await dialog.locator('textarea[name="element_sinks"]').fill('postgres\nparquet');
  await dialog.locator('button:has-text("Trigger")').last().click();

  // The run's page shows its state; reload until it is final.
  const deadline = Date.now() + 8 * 60 * 1000;
  await page.waitForURL(/\/runs\//, { timeout: 30000 });
  const runUrl = page.url();
  let state = '';
  while (Date.now() < deadline) {
    // The run's header: "<run id>", then its state, then "Logical Date".
    const text = await page.locator('body').innerText();
    const m = text.match(/\n\s*(Success|Failed)\s*\n[\s\/]*Logical Date/);
    if (m) { state = m[1].toLowerCase(); break; }
    await page.waitForTimeout(3000);
    await page.goto(runUrl);
  }
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log(JSON.stringify({ run: runUrl, state }));
} finally {
  await browser.close();
}
