// Connects the official TypeScript SDK client over HTTP+SSE and prints what it saw as JSON.
// Usage: node client.mjs http://127.0.0.1:PORT/sse
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const url = new URL(process.argv[2]);
const text = "héllo ✓\nsecond line\t\"quoted\"";
const client = new Client({ name: "interop-ts", version: "1.0.0" });
const transport = new SSEClientTransport(url);
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 20000);
try {
  await client.connect(transport);
  const tools = await client.listTools();
  const echoed = await client.callTool({ name: "echo", arguments: { text } });
  const added = await client.callTool({ name: "add", arguments: { a: 2, b: 3.5 } });
  let invalid = null;
  try {
    await client.callTool({ name: "add", arguments: { a: "x" } });
  } catch (error) {
    invalid = { code: error.code, message: error.message };
  }
  await client.ping();
  console.log(JSON.stringify({
    protocolVersion: transport._protocolVersion ?? null,
    serverVersion: client.getServerVersion(),
    tools: tools.tools.map((t) => t.name).sort(),
    echoed: echoed.content,
    sent: text,
    added: added.content,
    invalid,
  }));
  await client.close();
  clearTimeout(timer);
} catch (error) {
  console.error(String(error?.stack ?? error));
  process.exit(2);
}
