import { defineConfig } from 'vite';

// The UI is served by `qllama serve` from web/dist at '/'; relative asset paths keep it working
// behind a reverse proxy under a sub-path too. Everything is bundled: no CDN, no web fonts.
export default defineConfig({
  root: import.meta.dirname,
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false },
  server: { proxy: { '/v1': 'http://127.0.0.1:5000', '/api': 'http://127.0.0.1:5000', '/health': 'http://127.0.0.1:5000' } },
});
