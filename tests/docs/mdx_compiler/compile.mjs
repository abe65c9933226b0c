// Compile each MDX file named on the command line; print one JSON line per file, exit 1 if any fails.
import { compile } from "@mdx-js/mdx";
import remarkFrontmatter from "remark-frontmatter";
import remarkGfm from "remark-gfm";
import { readFileSync } from "node:fs";

let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    await compile(readFileSync(file, "utf8"), { remarkPlugins: [remarkGfm, remarkFrontmatter] });
    console.log(JSON.stringify({ file, ok: true }));
  } catch (error) {
    failed += 1;
    console.log(JSON.stringify({ file, ok: false, error: String(error) }));
  }
}
process.exit(failed ? 1 : 0);
