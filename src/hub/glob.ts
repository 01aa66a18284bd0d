/**
 * Minimal glob matching for `--include`: `*` (within one path segment), `**` (any depth),
 * `?`, `[abc]` and `{a,b}`. A pattern without '/' matches the file's base name, like
 * .gitignore, so `--include '*.safetensors'` finds shards in sub-folders too.
 * Written here because Node 20's path.matchesGlob is still experimental and warns on use.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        // '**/' also matches zero folders
        if (pattern[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) { re += '\\['; continue; }
      const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
      re += body.startsWith('!') ? `[^${body.slice(1)}]` : `[${body}]`;
      i = end;
    } else if (c === '{') { braces++; re += '(?:'; }
    else if (c === '}' && braces > 0) { braces--; re += ')'; }
    else if (c === ',' && braces > 0) re += '|';
    else re += c.replace(/[.+^$()|\\\]{}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function globMatcher(patterns: readonly string[]): (filePath: string) => boolean {
  const compiled = patterns.map((p) => ({ re: globToRegExp(p), baseOnly: !p.includes('/') }));
  return (filePath) => compiled.some(({ re, baseOnly }) =>
    re.test(baseOnly ? filePath.slice(filePath.lastIndexOf('/') + 1) : filePath));
}
