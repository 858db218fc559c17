// Parse an AsyncAPI document with the official parser; print its diagnostics and messages as
// JSON. Exits 1 when the document has an error (tests/test_asyncapi.py).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join(".")}: ${d.message}`);
const warnings = diagnostics.filter((d) => d.severity === 1).map((d) => `${d.path.join(".")}: ${d.message}`);
const messages = document ? document.allMessages().all().map((m) => m.name()) : [];
const channels = document ? document.allChannels().all().map((c) => c.address()) : [];
console.log(JSON.stringify({ errors, warnings, messages, channels }));
process.exit(document && errors.length === 0 ? 0 : 1);
