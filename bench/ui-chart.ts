// `npm run bench:ui`: how the live loss chart keeps up at 100k points, in Debian's Chromium (headless, software
// rendering): frame time of the app's way (typed arrays, one redraw per animation frame) against the straightforward
// way (arrays rebuilt and the chart redrawn per event) measured in the same run. Prints one JSON object.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const HISTORY = Number(process.env.POINTS ?? 100_000);
const FRAMES = 60;
const PER_FRAME = 5; // events arriving between two frames (a fast run on a GPU logs ~100 steps/s)

const js = (
  await build({
    entryPoints: [here('./ui-chart-page.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    target: 'es2022',
    logLevel: 'silent',
  })
).outputFiles[0].text;
const css = readFileSync(here('../node_modules/uplot/dist/uPlot.min.css'), 'utf8');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
  ],
});
const page = await browser.newPage({ viewport: { width: 1000, height: 400 } });
await page.setContent(
  `<!doctype html><html><head><style>${css}</style></head><body><script>${js}</script></body></html>`,
);
const r = (await page.evaluate(
  ([h, f, p]) =>
    (window as unknown as { runBench(h: number, f: number, p: number): Promise<unknown> }).runBench(h, f, p),
  [HISTORY, FRAMES, PER_FRAME],
)) as {
  ours: { p50: number; p95: number; max: number; meanFrameMs: number };
  naive: { p50: number; p95: number; max: number; meanFrameMs: number };
};
await browser.close();
const round = (o: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 100) / 100]));
process.stdout.write(
  `${JSON.stringify({
    bench: 'ui-chart',
    points: HISTORY,
    frames: FRAMES,
    events_per_frame: PER_FRAME,
    browser: 'chromium (headless, software)',
    ours_ms_per_frame: round(r.ours),
    naive_ms_per_frame: round(r.naive),
    ratio_naive_over_ours_p50: Math.round((r.naive.p50 / r.ours.p50) * 10) / 10,
    ours_fits_60fps_p95: r.ours.p95 < 16.7,
  })}\n`,
);
