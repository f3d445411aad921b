// Runs one Node.js verification sample from README.md against one request.
//
// Reads a JSON object on stdin:
//   {"name": "node-crypto", "code": "<the sample, as written in the README>",
//    "body_base64": "<the raw body>", "headers": {...lower-case names...}, "secret": "whsec_..."}
// The sample defines verifyWebhook(rawBody, headers, secret), which returns the
// parsed message or throws. Prints one JSON object on stdout:
//   {"accepted": true, "message": ...} or {"accepted": false, "error": {"name", "message"}}
// The sample's require() resolves packages from this folder's node_modules.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { createRequire } = require("node:module");

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const sampleRequire = createRequire(path.join(__dirname, "package.json"));
// The wrapper's first line holds the sample's first line, so error positions match the README block.
const wrapped = `(function (require) { ${input.code}\nreturn verifyWebhook;\n})`;
const verifyWebhook = vm.runInThisContext(wrapped, { filename: `README.md (${input.name})` })(sampleRequire);

let result;
try {
  const message = verifyWebhook(Buffer.from(input.body_base64, "base64"), input.headers, input.secret);
  result = { accepted: true, message };
} catch (error) {
  result = { accepted: false, error: { name: error?.name ?? typeof error, message: String(error?.message ?? error) } };
}
process.stdout.write(`${JSON.stringify(result)}\n`);
