#!/usr/bin/env node
// Runs the CLI from its TypeScript sources through tsx's loader (the packaged app ships compiled JavaScript).
import { register } from 'tsx/esm/api';

register();
await import('../native/cli/main.ts');
