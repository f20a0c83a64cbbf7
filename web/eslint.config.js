// Lint for the pages: eslint's recommended rules plus eslint-plugin-security.
import js from "@eslint/js";
import security from "eslint-plugin-security";
import globals from "globals";

export default [
  { ignores: ["node_modules/**", "**/tvmjs.bundle.js"] },
  js.configs.recommended,
  security.configs.recommended,
  {
    files: ["**/*.js"],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: { ...globals.browser, tvmjs: "readonly" },
    },
    rules: {
      "no-new-func": "error",
    },
  },
  {
    // node's side: the JS unit tests and the tokenizer tool the native backend runs
    files: ["tests/**/*.js", "tools/**/*.mjs", "**/tools/*.mjs", "**/tests/*.js"],
    languageOptions: { globals: { ...globals.node } },
  },
];
