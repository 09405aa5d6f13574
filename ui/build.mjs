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
  // A classic script, not a module: browsers fetch module scripts in CORS mode, with an
  // Origin header, which the API guard refuses (docs/SECURITY.md); a classic one has none.
  format: "iife",
  target: "es2020",
  outdir: out,
  legalComments: "eof",
  // Fixed names: gustd serves exactly the files of dist/, and index.html names them.
  entryNames: "[name]",
  logLevel: "warning",
});
copyFileSync("src/index.html", `${out}/index.html`);
