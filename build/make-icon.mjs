// Draws build/icon.png (512×512 RGBA): a rounded dark square with a Δ, written as a PNG with zlib — no image library.
// Run: node build/make-icon.mjs
import { writeFileSync } from 'node:fs';
import { deflateSync, crc32 } from 'node:zlib';

const N = 512;
const px = Buffer.alloc(N * N * 4);
const inRounded = (x, y, r) => {
  const cx = Math.min(Math.max(x, r), N - 1 - r),
    cy = Math.min(Math.max(y, r), N - 1 - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
};
// Triangle Δ: apex (256,110), base (96,400)-(416,400); hollow with a stroke of 44 px.
const edge = (ax, ay, bx, by, x, y) => ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / Math.hypot(bx - ax, by - ay);
const inTri = (x, y, inset) => {
  const A = [256, 110 + inset * 2.1],
    B = [96 + inset * 1.9, 400 - inset],
    C = [416 - inset * 1.9, 400 - inset];
  const d1 = edge(...A, ...B, x, y),
    d2 = edge(...B, ...C, x, y),
    d3 = edge(...C, ...A, x, y);
  return (d1 <= 0 && d2 <= 0 && d3 <= 0) || (d1 >= 0 && d2 >= 0 && d3 >= 0);
};
for (let y = 0; y < N; y++) {
  for (let x = 0; x < N; x++) {
    const i = (y * N + x) * 4;
    if (!inRounded(x, y, 96)) continue; // transparent corners
    const t = y / N;
    let [r, g, b] = [Math.round(16 + 20 * t), Math.round(24 + 30 * t), Math.round(40 + 50 * t)];
    if (inTri(x, y, 0) && !inTri(x, y, 44)) [r, g, b] = [80, 200, 170];
    px[i] = r;
    px[i + 1] = g;
    px[i + 2] = b;
    px[i + 3] = 255;
  }
}
const raw = Buffer.alloc(N * (N * 4 + 1));
for (let y = 0; y < N; y++) px.copy(raw, y * (N * 4 + 1) + 1, y * N * 4, (y + 1) * N * 4); // filter byte 0 per row
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
};
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(N, 0);
ihdr.writeUInt32BE(N, 4);
ihdr[8] = 8;
ihdr[9] = 6; // 8-bit RGBA
const png = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk('IHDR', ihdr),
  chunk('IDAT', deflateSync(raw, { level: 9 })),
  chunk('IEND', Buffer.alloc(0)),
]);
writeFileSync(new URL('./icon.png', import.meta.url), png);
console.log(`build/icon.png: ${png.length} bytes`);
