// The renderer bundle: root renderer/, output renderer/dist, relative base so that it loads from file:// (Electron)
// and from any path `delta-studio serve` mounts it on.
import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  plugins: [svelte()],
  build: {
    outDir: fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
  // `npm run serve` listens on 8470; the dev server's pages reach it as the server's own (Host and Origin rewritten;
  // start serve with --public-host localhost:5173 for the event socket's Origin).
  server: { proxy: { '/api': { target: 'http://127.0.0.1:8470', ws: true, changeOrigin: true } } },
});
