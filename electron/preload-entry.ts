// Bundled as dist-electron/preload.cjs: sandboxed preloads may require only 'electron' (and a few Node built-ins).
import { contextBridge, ipcRenderer } from 'electron';
import { install } from './preload.js';

install({ contextBridge, ipcRenderer }, process.platform);
