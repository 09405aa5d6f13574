// Bundles the dashboard into dist/ (what gustd embeds and serves at /ui): one script,
// one stylesheet, one page; no CDN, nothing fetched at run time but the /v1 API.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

// usage: node build.mjs [OUTDIR] (default dist; test_ui.py builds into a temp dir to
// check that the committed dist is what the sources give).
const out = process.argv[2] || "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: "src/app.js" },
  bundle: true,
  minify: true,
  // A classic script: one file, no module loading (a module script's request is a CORS
  // one, with an Origin header, which works only because the guard accepts gustd's own).
  format: "iife",
  target: "es2020",
  outdir: out,
  legalComments: "eof",
  // Fixed names: gustd serves exactly the files of dist/, and index.html names them.
  entryNames: "[name]",
  logLevel: "warning",
});
copyFileSync("src/index.html", `${out}/index.html`);
