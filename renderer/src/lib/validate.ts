// The run form's checks: the contract's own table of settings (defaults, ranges, labels), so the form says what to
// fix in the same words the engine would, before anything is sent.
export {
  runConfigProblems as validateRunConfig,
  numberProblem,
  RUN_CHOICES,
  RUN_DEFAULTS,
  RUN_NUMBERS,
  type RunNumberField,
} from '../../../native/contract/run-config.js';
