// Types of build/eslint-layers.js (plain JavaScript, so that eslint.config.js can load it without a compiler).
export declare const FLOORS: Record<string, number>;
export declare function layerProblem(fromFile: string, specifier: string): string | null;
export declare const layersPlugin: { rules: Record<string, unknown> };
