// The user's task vocabulary (the contract's) and the model head each task trains. The engine names a model's head
// by what it computes (a pair classification is a classification head); this is the one place they meet.
import { TASKS, type TaskName } from '../contract/index.js';
import { headOf, type Task } from '../models/types.js';

const HEAD: Record<TaskName, Task> = {
  classification: 'classification',
  'pair-classification': 'classification',
  regression: 'regression',
  'causal-lm': 'causal-lm',
  seq2seq: 'seq2seq',
  chat: 'causal-lm',
};

/** The model head a task trains. */
export const headTask = (task: TaskName): Task => HEAD[task];

/** A task as stored by the engine or an older file (seq2seq-lm) in the user's words. */
export function taskName(stored: string): TaskName {
  if ((TASKS as readonly string[]).includes(stored)) return stored as TaskName;
  const head = headOf(stored);
  if (head) return head;
  throw new Error(`unknown task "${stored}" (tasks: ${TASKS.join(', ')})`);
}
