// Vite build of cubed's web UI into dist/, which the Go server embeds (web/ui.go). Assets get
// content-hashed names under dist/assets/ (served with a one-year Cache-Control); dist/.keep is
// kept so that `go build` works before the UI is built, hence emptyOutDir is off and the old
// build is removed here instead.
import { defineConfig } from 'vite';
import { rmSync, mkdirSync, writeFileSync } from 'node:fs';

function cleanDist() {
  return {
    name: 'cubed-clean-dist',
    apply: 'build',
    buildStart() {
      rmSync('dist/assets', { recursive: true, force: true });
      rmSync('dist/index.html', { force: true });
      mkdirSync('dist', { recursive: true });
      writeFileSync('dist/.keep', '');
    },
  };
}

export default defineConfig({
  plugins: [cleanDist()],
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    target: 'es2022',
    chunkSizeWarningLimit: 900,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8080', '/metrics': 'http://127.0.0.1:8080' },
  },
});
