#!/usr/bin/env node
// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk), used by
// tests/integration/test_node_client.py to show that the servers work with a non-Python client.
//
// Usage: node client.mjs < config.json     (or: node client.mjs config.json)
//
// config.json:
//   {
//     "transport": "stdio",                      // or "http"
//     "command": "/path/python", "args": ["-m", "mcp_tenants.postgres"],
//     "env": {"REDIS_HOST": "..."}, "cwd": "/path/checkout",   // stdio only
//     "url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ..."},  // http only
//     "calls": [{"tool": "list_tenants", "arguments": {}, "corrupt": false}]
//   }
//
// Output, one JSON object per line on stdout:
//   {"event": "initialized", "protocolVersion", "serverInfo", "capabilities"}
//   {"event": "tools", "tools": [{name, description, inputSchema, outputSchema, annotations}]}
//   {"event": "call", "tool", "isError", "structuredContent", "text", "validated"}
//   {"event": "call", "tool", "exception": {"name", "code", "message"}}   (the SDK threw)
//   {"event": "error", "stage": "connect" | "list_tools", "name", "code", "message"}  (exit code 1)
//   {"event": "closed", "ms"}   (how long client.close() took, after a successful connect)
//
// Tools are always listed before any call: the SDK client compiles each tool's outputSchema
// (with Ajv) during listTools() and validates every structuredContent against it in callTool(),
// throwing an McpError when it does not conform. "corrupt": true replaces the top-level values of
// that call's structuredContent with values of the wrong type *before* the SDK sees the response,
// to prove that this validation is really active (the call must then report an exception).

import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const describeError = (err) => ({
  name: err?.constructor?.name ?? 'Error',
  code: err?.code ?? null,
  message: String(err?.message ?? err),
});

// A transport wrapper that records the negotiated protocol version and can corrupt one response.
class TappedTransport {
  constructor(inner) {
    this.inner = inner;
    this.protocolVersion = null;
    this.corruptNext = false;
    inner.onmessage = (message, extra) => this.onmessage?.(this.observe(message), extra);
    inner.onclose = () => this.onclose?.();
    inner.onerror = (error) => this.onerror?.(error);
  }

  observe(message) {
    const result = message?.result;
    if (result && typeof result.protocolVersion === 'string' && result.serverInfo) {
      this.protocolVersion = result.protocolVersion;
    }
    if (this.corruptNext && result && result.structuredContent && typeof result.structuredContent === 'object') {
      this.corruptNext = false;
      const wrong = {};
      for (const [key, value] of Object.entries(result.structuredContent)) {
        wrong[key] = typeof value === 'string' ? 12345 : 'not-the-declared-type';
      }
      return { ...message, result: { ...result, structuredContent: wrong } };
    }
    return message;
  }

  get sessionId() { return this.inner.sessionId; }
  setProtocolVersion(version) { this.inner.setProtocolVersion?.(version); }
  start() { return this.inner.start(); }
  send(message, options) { return this.inner.send(message, options); }
  close() { return this.inner.close(); }
}

// Whether the SDK compiled an outputSchema validator for this tool (a private SDK method: null
// when a future SDK version renames it; the "corrupt" call checks the behaviour regardless).
function hasValidator(client, name) {
  if (typeof client.getToolOutputValidator !== 'function') return null;
  return client.getToolOutputValidator(name) !== undefined;
}

function readConfig() {
  const source = process.argv[2] ? readFileSync(process.argv[2], 'utf8') : readFileSync(0, 'utf8');
  return JSON.parse(source);
}

function makeTransport(config) {
  if (config.transport === 'http') {
    return new StreamableHTTPClientTransport(new URL(config.url), {
      requestInit: { headers: config.headers ?? {} },
    });
  }
  if (config.transport === 'stdio' || config.transport === undefined) {
    return new StdioClientTransport({
      command: config.command,
      args: config.args ?? [],
      env: config.env,
      cwd: config.cwd,
      stderr: 'inherit', // server logs go to our stderr; stdout stays protocol-only
    });
  }
  throw new Error(`unknown transport ${JSON.stringify(config.transport)}`);
}

async function main() {
  const config = readConfig();
  const transport = new TappedTransport(makeTransport(config));
  const client = new Client({ name: 'mcp-tenants-node-test', version: '1.0.0' });

  try {
    await client.connect(transport);
  } catch (err) {
    emit({ event: 'error', stage: 'connect', ...describeError(err) });
    await client.close().catch(() => {});
    return 1;
  }
  emit({
    event: 'initialized',
    protocolVersion: transport.protocolVersion,
    serverInfo: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
  });

  let exitCode = 0;
  try {
    let tools;
    try {
      // listTools() is what arms the SDK's outputSchema validation for callTool().
      tools = [];
      let cursor;
      do {
        const page = await client.listTools(cursor ? { cursor } : undefined);
        tools.push(...page.tools);
        cursor = page.nextCursor;
      } while (cursor);
    } catch (err) {
      emit({ event: 'error', stage: 'list_tools', ...describeError(err) });
      return 1;
    }
    emit({
      event: 'tools',
      tools: tools.map(({ name, description, inputSchema, outputSchema, annotations }) => ({
        name, description, inputSchema, outputSchema: outputSchema ?? null, annotations: annotations ?? null,
        validatorArmed: hasValidator(client, name),
      })),
    });

    for (const call of config.calls ?? []) {
      transport.corruptNext = Boolean(call.corrupt);
      try {
        const result = await client.callTool({ name: call.tool, arguments: call.arguments ?? {} });
        emit({
          event: 'call',
          tool: call.tool,
          isError: result.isError === true,
          structuredContent: result.structuredContent ?? null,
          text: (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join(' '),
          // callTool() returned, so the SDK validated structuredContent against the outputSchema.
          validated: hasValidator(client, call.tool) === true && result.structuredContent !== undefined,
        });
      } catch (err) {
        emit({ event: 'call', tool: call.tool, exception: describeError(err) });
      } finally {
        transport.corruptNext = false;
      }
    }
  } finally {
    const closing = Date.now();
    await client.close().catch((err) => {
      process.stderr.write(`client.close failed: ${err}\n`);
      exitCode = 1;
    });
    // For stdio the SDK closes the server's stdin, waits up to 2 s, then sends SIGTERM.
    emit({ event: 'closed', ms: Date.now() - closing });
  }
  return exitCode;
}

main().then(
  (code) => { process.exitCode = code; },
  (err) => {
    emit({ event: 'error', stage: 'client', ...describeError(err) });
    process.exitCode = 1;
  },
);
