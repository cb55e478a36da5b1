// Types the renderer shares with the engine: the contract's, and nothing else of native/ (the dependency rule).
export type * from '../../../native/contract/index.js';
