// Types the renderer shares with the engine: only *types* cross from native/ (the dependency rule).
import type { ApiError, EventName, Events, MethodName, Params, RunConfig } from '../../../native/api/contract.js';
import type * as T from '../../../native/api/types.js';

export type { ApiError, EventName, Events, MethodName, Params, RunConfig };
export type {
  AppInfo,
  WorkspaceInfo,
  RecentWorkspace,
  CheckReport,
  ModelRow,
  ModelTree,
  ModelTreeResult,
  DeltaReport,
  DatasetPreview,
  DatasetImportResult,
  DatasetSummary,
  DatasetStatsResult,
  RunEstimate,
  RunStarted,
  RunSummary,
  RunDetail,
  RunMetrics,
  RunControl,
  CompareRow,
  CompareResult,
  SweepStarted,
  PluginSummary,
  PluginDetail,
  PluginLineage,
  PredictResult,
  PredictRow,
  Prediction,
  ExportResult,
  MetricPoint,
  JobStarted,
  GpuStatus,
} from '../../../native/api/types.js';
export type RunStatus = Events['run.status']['status'];
export type TreeNode = T.ModelTree['root'];

// The result of each method, as the service returns it.
export type { Result } from '../../../native/api/service.js';
