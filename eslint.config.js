// Lint: the recommended JavaScript and TypeScript rules, plus the layering of the house (build/eslint-layers.js).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { layersPlugin } from './build/eslint-layers.js';

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'scratch/**',
      'dist/**',
      'out/**',
      'renderer/dist/**',
      'dist-electron/**',
      '.gpu/**',
      'peft-check/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        performance: 'readonly',
        URL: 'readonly',
        Buffer: 'readonly',
        TextEncoder: 'readonly',
        setTimeout: 'readonly',
        setImmediate: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // CommonJS, as electron-builder loads its hooks.
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The floors of the house: see build/eslint-layers.js.
    files: ['native/**/*.ts', 'renderer/src/**/*.ts', 'electron/**/*.ts'],
    plugins: { layers: layersPlugin },
    rules: { 'layers/imports': 'error' },
  },
);
