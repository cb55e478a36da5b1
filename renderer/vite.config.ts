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
  server: { proxy: { '/api': { target: 'http://127.0.0.1:7860', ws: true } } },
});
