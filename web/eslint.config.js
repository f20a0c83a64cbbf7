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
];
