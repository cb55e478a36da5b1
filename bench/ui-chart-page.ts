// The page bench/ui-chart.ts loads in Chromium: a live loss chart fed as the app feeds it (typed-array Series, one
// uPlot setData per animation frame) against the straightforward way (plain arrays of points, the chart's arrays
// rebuilt and redrawn on every event), both with a 100k-point history and a stream of new points.
import uPlot from 'uplot';
import { Series } from '../renderer/src/lib/series.js';

interface Result {
  frames: number;
  events: number;
  p50: number;
  p95: number;
  max: number;
  meanFrameMs: number;
}

const opts = (): uPlot.Options => ({
  width: 900,
  height: 260,
  scales: { x: { time: false } },
  series: [{}, { stroke: '#5e6ad2', points: { show: false } }],
  axes: [{}, {}],
  legend: { show: false },
});
const stats = (times: number[], events: number): Result => {
  const s = [...times].sort((a, b) => a - b);
  return {
    frames: times.length,
    events,
    p50: s[Math.floor(s.length * 0.5)],
    p95: s[Math.floor(s.length * 0.95)],
    max: s[s.length - 1],
    meanFrameMs: times.reduce((a, b) => a + b, 0) / times.length,
  };
};
const loss = (i: number): number => 2 * Math.exp(-i / 20000) + 0.05 * Math.sin(i / 7);

/** Ours: events append to typed arrays; a frame draws once, whatever number of events arrived. */
async function ours(history: number, frames: number, perFrame: number): Promise<Result> {
  const el = document.body.appendChild(document.createElement('div'));
  const s = new Series();
  for (let i = 0; i < history; i++) s.push(i, loss(i));
  const plot = new uPlot(opts(), [s.xs, s.ys] as unknown as uPlot.AlignedData, el);
  const times: number[] = [];
  let step = history;
  for (let f = 0; f < frames; f++) {
    await new Promise(requestAnimationFrame);
    const t0 = performance.now();
    for (let k = 0; k < perFrame; k++, step++) s.push(step, loss(step));
    plot.setData([s.xs, s.ys] as unknown as uPlot.AlignedData);
    await Promise.resolve(); // uPlot draws in a microtask queued by setData: include the draw
    times.push(performance.now() - t0);
  }
  plot.destroy();
  el.remove();
  return stats(times, frames * perFrame);
}

/** The straightforward way: an array of {step, loss} objects; every event rebuilds the chart's arrays and redraws. */
async function naive(history: number, frames: number, perFrame: number): Promise<Result> {
  const el = document.body.appendChild(document.createElement('div'));
  const points: { step: number; loss: number }[] = [];
  for (let i = 0; i < history; i++) points.push({ step: i, loss: loss(i) });
  const plot = new uPlot(opts(), [points.map((p) => p.step), points.map((p) => p.loss)], el);
  const times: number[] = [];
  let step = history;
  for (let f = 0; f < frames; f++) {
    await new Promise(requestAnimationFrame);
    const t0 = performance.now();
    for (let k = 0; k < perFrame; k++, step++) {
      points.push({ step, loss: loss(step) });
      plot.setData([points.map((p) => p.step), points.map((p) => p.loss)]);
      await Promise.resolve();
    }
    times.push(performance.now() - t0);
  }
  plot.destroy();
  el.remove();
  return stats(times, frames * perFrame);
}

(window as unknown as { runBench: typeof run }).runBench = run;
async function run(history: number, frames: number, perFrame: number): Promise<{ ours: Result; naive: Result }> {
  await ours(1000, 10, 1); // warm up
  return { ours: await ours(history, frames, perFrame), naive: await naive(history, frames, perFrame) };
}
