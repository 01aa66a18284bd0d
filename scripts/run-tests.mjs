// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// Node 20's `--test` takes no globs, so the files are listed here. Pass a substring to filter.
import { readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.join(process.cwd(), 'dist', 'test');
const filter = process.argv[2] ?? '';
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (name.endsWith('.test.js') && full.includes(filter)) files.push(full);
  }
})(root);
if (files.length === 0) {
  console.error(`no test files under ${root}${filter ? ` matching "${filter}"` : ''}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
