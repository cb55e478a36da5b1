// Entry: the client for this window (Electron bridge or HTTP), the stores, the app.
import { mount } from 'svelte';
import 'uplot/dist/uPlot.min.css';
import './app.css';
import App from './App.svelte';
import { createApi } from './lib/api.js';
import { createStudio } from './lib/studio.js';

const api = createApi();
// The token is kept in sessionStorage by the client: drop it from the address bar (and from history).
const url = new URL(location.href);
if (url.searchParams.has('token')) {
  url.searchParams.delete('token');
  history.replaceState(null, '', url.href);
}

mount(App, { target: document.getElementById('app')!, props: { studio: createStudio(api) } });
