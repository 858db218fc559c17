// Copy Insight's browser client and the React hook from the product into src/hooks/, as its
// README tells a Next.js app to. Run after upgrading Insight:
//   npm run sync-insight            (from ../../edge/static, this repository's copy)
//   npm run sync-insight -- <dir>   (from another checkout or an installed package)
// Their types, insight.d.ts, are generated from the app's declared events, its own included:
//   insight schema --modules demo.events --typescript src/hooks/insight.d.ts
import { copyFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = resolve(process.argv[2] ?? join(here, "..", "..", "..", "edge", "static"));
const target = join(here, "..", "src", "hooks");

for (const name of ["insight.js", "insight-wire.js", "insight-page.js", "useUIEvents.ts"]) {
  copyFileSync(join(source, name), join(target, name));
  console.log(`${join(source, name)} -> src/hooks/${name}`);
}
