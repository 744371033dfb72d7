#!/usr/bin/env node
// Validates glTF/GLB files with the Khronos glTF validator (npm `gltf-validator`, installed in
// viewer/node_modules by `make install`) and prints one JSON report per file, one per line, in
// the order given:
//   {"path", "numErrors", "numWarnings", "numInfos", "numHints", "truncated", "messages": [
//      {"code", "severity" (0 error, 1 warning, 2 info, 3 hint), "pointer"?, "offset"?, "message"}]}
// A file that cannot be read or is not glTF at all gets numErrors 1 and a message with code
// READ_ERROR or NOT_GLTF, so a caller never mistakes it for a clean file.
//
// usage: node tests/gltf_validator.mjs [--max-issues N] [--list FILE|-] [PATH ...]
//   --list FILE   read more paths from FILE, one a line ("-": standard input)
//   --max-issues  issues per file before the validator stops (default 200; 0 = no limit); a
//                 report cut there has "truncated": true and counts only what it saw
// Exit code: 0 when no file has an error, 1 when one has, 2 on a usage error.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(new URL("../viewer/package.json", import.meta.url));
const validator = require("gltf-validator");

function usage(msg) {
  process.stderr.write(`gltf_validator: ${msg}\n`);
  process.stderr.write("usage: node tests/gltf_validator.mjs [--max-issues N] [--list FILE|-] [PATH ...]\n");
  process.exit(2);
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString("utf8");
}

const args = process.argv.slice(2);
const paths = [];
let maxIssues = 200;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--max-issues") {
    maxIssues = Number.parseInt(args[++i], 10);
    if (!Number.isFinite(maxIssues) || maxIssues < 0) usage("--max-issues wants a number >= 0");
  } else if (a === "--list") {
    const src = args[++i];
    if (src === undefined) usage("--list wants a file or -");
    const text = src === "-" ? await readStdin() : await readFile(src, "utf8");
    for (const line of text.split(/\r?\n/)) if (line.trim()) paths.push(line.trim());
  } else if (a === "--version") {
    process.stdout.write(`${validator.version()}\n`);
    process.exit(0);
  } else if (a.startsWith("--")) {
    usage(`unknown option ${a}`);
  } else {
    paths.push(a);
  }
}

function failure(file, code, message) {
  return {
    path: file, numErrors: 1, numWarnings: 0, numInfos: 0, numHints: 0, truncated: false,
    messages: [{ code, severity: 0, message }],
  };
}

async function validate(file) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (e) {
    return failure(file, "READ_ERROR", String(e && e.message ? e.message : e));
  }
  const dir = path.dirname(path.resolve(file));
  let report;
  try {
    report = await validator.validateBytes(bytes, {
      uri: path.basename(file),
      maxIssues,
      // a .gltf with external buffers or images: resolve them beside the file
      externalResourceFunction: (uri) => readFile(path.resolve(dir, decodeURIComponent(uri))),
    });
  } catch (e) {
    // the validator rejects input it cannot even recognise as glTF or GLB
    return failure(file, "NOT_GLTF", String(e && e.message ? e.message : e));
  }
  const issues = report.issues;
  return {
    path: file,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    truncated: Boolean(issues.truncated),
    messages: issues.messages.map((m) => {
      const out = { code: m.code, severity: m.severity, message: m.message };
      if (m.pointer !== undefined) out.pointer = m.pointer;
      if (m.offset !== undefined) out.offset = m.offset;
      return out;
    }),
  };
}

let anyError = false;
for (const file of paths) {
  const r = await validate(file);
  if (r.numErrors > 0) anyError = true;
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
process.exitCode = anyError ? 1 : 0;
