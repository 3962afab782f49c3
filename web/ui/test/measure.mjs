// Not a test: measures the dashboard's cold first load against running cubed servers, alternating
// between them so that both see the same machine load. Usage:
//   node test/measure.mjs N URL [URL...]     (URL of the dashboard page, e.g. http://127.0.0.1:8080/#/cube/wikiticker)
import { launch } from './harness.mjs';

const [n, ...urls] = process.argv.slice(2);
const browser = await launch();
const res = new Map(urls.map((u) => [u, []]));
for (let i = 0; i < Number(n); i++) {
  for (const url of urls) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const t0 = Date.now();
    await page.goto(url);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
    await page.waitForSelector('.tile[data-measure="uv"]');
    const ms = Date.now() - t0;
    const nav = await page.evaluate(() => {
      const e = performance.getEntriesByType('navigation')[0];
      return { dcl: Math.round(e.domContentLoadedEventEnd), data: Number(document.body.dataset.loadedMs) };
    });
    res.get(url).push({ ms, ...nav });
    await ctx.close();
  }
}
await browser.close();
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
for (const [url, rs] of res) {
  console.log(`${url}: median ${med(rs.map((r) => r.ms))} ms goto→tiles (min ${Math.min(...rs.map((r) => r.ms))}), median DOMContentLoaded ${med(rs.map((r) => r.dcl))} ms, median first data ${med(rs.map((r) => r.data))} ms; all: ${rs.map((r) => r.ms).join(' ')}`);
}
