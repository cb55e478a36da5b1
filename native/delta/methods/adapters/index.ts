// The bottleneck adapters (addition-based): one module each, registered in this order. None merges into base
// weights and PEFT has none of them.
import './adapter.js';
import './parallel-adapter.js';
import './low-rank-adapter.js';
import './compacter.js';
