// Bundled as dist-electron/trainer.cjs, the module electron/trainer-host.ts forks with utilityProcess. The trainer
// finds its parent through process.parentPort there (native/messages/ports.ts startedBy).
import '../native/train/trainer-process.js';
