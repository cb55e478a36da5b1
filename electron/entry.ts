// Bundled as dist-electron/main.cjs, Electron's main entry ("main" in the packaged package.json): the real electron
// modules and the engine's service handed to createApp.
import { join } from 'node:path';
import { app, BrowserWindow, dialog, ipcMain, Menu, protocol, session, shell, utilityProcess } from 'electron';
import { createService } from '../native/api/service.js';
import { createApp } from './main.js';
import { utilityTrainer } from './trainer-host.js';

// dist-electron/ sits beside renderer/dist in the app (asar or not).
const here = __dirname;
createApp({
  app,
  BrowserWindow,
  ipcMain,
  dialog,
  shell,
  Menu,
  protocol,
  session,
  utilityProcess,
  createService,
  makeTrainerStarter: (u) => utilityTrainer(u, join(here, 'trainer.cjs')),
  rendererDir: join(here, '..', 'renderer', 'dist'),
  preloadPath: join(here, 'preload.cjs'),
});
