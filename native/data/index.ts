// The dataset importer: formats in, normalised versioned copies out, token statistics and a tokenization cache.
export * from './types.js';
export {
  importDataset,
  resolveColumns,
  splitPoint,
  DEFAULT_COLUMNS,
  TASK_FIELDS,
  OPTIONAL_FIELDS,
  DEFAULT_MAX_BYTES,
  MAX_LABELS,
} from './import.js';
export {
  readDatasetVersion,
  readSplit,
  readSplitSync,
  loadSplit,
  splitFile,
  missingValidation,
  DATASET_FILE,
} from './store.js';
export {
  tokenLengthStats,
  tokenizeCached,
  encodeExample,
  tokenCacheKey,
  type DataTokenizer,
  type LengthStats,
  type TokenLengthStats,
  type TokenizedSplit,
  type TokenizedDataset,
  type EncodedExample,
} from './tokens.js';
export { formatOf } from './readers.js';
export { normaliseChat, checkConversation } from './chat.js';
export { firstInvalidUtf8 } from './decode.js';
