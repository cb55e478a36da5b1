// IPC channel names shared by main and preload (a module of constants, so the sandboxed preload bundle stays small).
export const CALL_CHANNEL = 'studio:call';
export const EVENT_CHANNEL = 'studio:event';
/** Shell-only IPC (native dialogs): not part of the contract, because `serve` has no native dialogs. */
export const PICK_FOLDER_CHANNEL = 'studio:pickFolder';
export const PICK_FILE_CHANNEL = 'studio:pickFile';
/** A shell event (not in the contract's Events): the menu opened or created a workspace. */
export const SHELL_WORKSPACE_EVENT = 'shell.workspace';
