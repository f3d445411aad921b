// A hookline client in Node.js: @grpc/grpc-js with @grpc/proto-loader reading the
// project's .proto files, no generated code. It creates a webhook, creates a flow
// linked to it, starts a job, polls GetJob until the job ends; creates an event
// type and a webhook for it (at WEBHOOK_URL + "-events") and publishes one event;
// and prints what it got as one JSON object on stdout. The API key travels in the
// `authorization: Bearer <key>` metadata of every call.
//
//   HOOKLINE_API_KEY=... node grpc-client.js ADDRESS WEBHOOK_URL PROTOS_DIR GOOGLE_PROTOS_DIR
//
// PROTOS_DIR is the repository's protos/; GOOGLE_PROTOS_DIR holds
// google/protobuf/*.proto (grpcio-tools ships them in grpc_tools/_proto).
// A failed call prints {"error": {"code", "name", "details"}} and exits 1.
"use strict";

const crypto = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const JOB_TERMINAL = new Set(["JOB_STATE_COMPLETED", "JOB_STATE_ERROR", "JOB_STATE_CANCELED"]);
const CALL_TIMEOUT_MS = 10_000;
const JOB_TIMEOUT_MS = 20_000;

// --- google.protobuf.Value / Struct <-> plain JSON ---------------------------

function toValue(data) {
  if (data === null) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(data)) return { listValue: { values: data.map(toValue) } };
  switch (typeof data) {
    case "number":
      return { numberValue: data };
    case "string":
      return { stringValue: data };
    case "boolean":
      return { boolValue: data };
    case "object":
      return { structValue: toStruct(data) };
    default:
      throw new TypeError(`not JSON: ${typeof data}`);
  }
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, item]) => [key, toValue(item)])) };
}

function fromValue(value) {
  switch (value?.kind) {
    case undefined:
    case "nullValue":
      return null;
    case "numberValue":
      return value.numberValue;
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return fromStruct(value.structValue);
    case "listValue":
      return (value.listValue.values ?? []).map(fromValue);
    default:
      throw new TypeError(`unknown Value kind ${value.kind}`);
  }
}

function fromStruct(struct) {
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([key, item]) => [key, fromValue(item)]));
}

// --- calls -----------------------------------------------------------------

function connect(address, includeDirs, apiKey) {
  const definition = protoLoader.loadSync(
    ["hookline/v1/webhooks.proto", "hookline/v1/flows.proto", "hookline/v1/jobs.proto", "hookline/v1/events.proto"],
    { includeDirs, longs: String, enums: String, defaults: true, oneofs: true },
  );
  const v1 = grpc.loadPackageDefinition(definition).hookline.v1;
  const credentials = grpc.credentials.createInsecure();
  const stubs = {
    webhooks: new v1.WebhookService(address, credentials),
    flows: new v1.FlowService(address, credentials),
    jobs: new v1.JobService(address, credentials),
    events: new v1.EventService(address, credentials),
  };
  // Unary calls as promises, each with the key in its metadata and a deadline.
  return (service, method, request) =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${apiKey}`);
      stubs[service][method](request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const [address, webhookUrl, ...includeDirs] = process.argv.slice(2);
  if (includeDirs.length !== 2) {
    throw new Error("usage: node grpc-client.js ADDRESS WEBHOOK_URL PROTOS_DIR GOOGLE_PROTOS_DIR");
  }
  const call = connect(address, includeDirs, process.env.HOOKLINE_API_KEY ?? "");
  const suffix = crypto.randomUUID().slice(0, 8);

  const created = await call("webhooks", "CreateWebhook", {
    webhook: { alias: `node-${suffix}`, url: webhookUrl, eventTypes: ["JOB.COMPLETED", "JOB.ERROR"] },
  });

  const flow = await call("flows", "CreateFlow", {
    flow: {
      alias: `node-invoice-${suffix}`,
      name: "Invoice (Node.js)",
      definition: toStruct({ steps: [{ transform: "{total: sum(items[].price), count: length(items), city: city}" }] }),
      webhookIds: [created.webhook.id],
    },
  });

  const started = await call("jobs", "StartJob", {
    flow: flow.alias,
    input: toValue({ items: [{ price: 5 }, { price: 7.5 }], city: "Zürich" }),
    correlationId: `node-order-${suffix}`,
  });

  let job = started;
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  while (!JOB_TERMINAL.has(job.state)) {
    if (Date.now() > deadline) throw new Error(`job ${job.id} still ${job.state} after ${JOB_TIMEOUT_MS} ms`);
    await sleep(50);
    job = await call("jobs", "GetJob", { id: started.id });
  }

  // The service's own event: a type, a webhook subscribed to its namespace, one publish.
  const eventType = await call("events", "CreateEventType", {
    eventType: { name: `node-${suffix}.order.paid`, description: "An order was paid (Node.js)." },
  });
  const eventsHook = await call("webhooks", "CreateWebhook", {
    webhook: { alias: `node-events-${suffix}`, url: `${webhookUrl}-events`, eventTypes: [`node-${suffix}.*`] },
  });
  const published = await call("events", "PublishEvent", {
    eventType: eventType.name,
    data: toValue({ orderId: `ord-${suffix}`, amount: 12.5, city: "Zürich" }),
    correlationId: `node-order-${suffix}`,
  });

  return {
    webhook: { id: created.webhook.id, alias: created.webhook.alias, secret: created.secret },
    eventsWebhook: { id: eventsHook.webhook.id, secret: eventsHook.secret },
    published: { id: published.id, eventType: published.eventType },
    flow: { id: flow.id, alias: flow.alias, version: flow.version, webhookIds: flow.webhookIds },
    job: {
      id: job.id,
      flowId: job.flowId,
      state: job.state,
      code: job.code,
      message: job.message,
      correlationId: job.correlationId,
      input: fromValue(job.input),
      output: fromValue(job.output),
    },
  };
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (error) => {
    if (error.code === undefined) throw error;
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code);
    process.stdout.write(`${JSON.stringify({ error: { code: error.code, name, details: error.details } })}\n`);
    process.exitCode = 1;
  },
);
