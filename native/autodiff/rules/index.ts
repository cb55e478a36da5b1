// Importing this module registers every gradient rule.
import './elementwise.js';
import './softmax.js';
import './matmul.js';
import './normalization.js';
import './reduce.js';
import './shape.js';
import './attention.js';
import './rotary.js';
