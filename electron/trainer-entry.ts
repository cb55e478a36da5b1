// Bundled as dist-electron/trainer.cjs, the module electron/trainer-host.ts forks with utilityProcess.
import './trainer-shim.js';
import '../native/train/trainer-process.js';
