// Connects the official TypeScript SDK client over WebSocket (WebSocketClientTransport,
// subprotocol "mcp") and prints what it saw as JSON.  Needs Node 22 (a global WebSocket).
// Usage: node websocket_client.mjs ws://127.0.0.1:PORT/ws [IDLE_MS]
// IDLE_MS: stay silent that long after connecting (the server's liveness pings must be answered).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { WebSocketClientTransport } from "@modelcontextprotocol/sdk/client/websocket.js";

const url = new URL(process.argv[2]);
const text = "héllo ✓\nsecond line\t\"quoted\"";
const client = new Client({ name: "interop-ts-ws", version: "1.0.0" });
const transport = new WebSocketClientTransport(url);
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 20000);
try {
  await client.connect(transport);
  await new Promise((resolve) => setTimeout(resolve, Number(process.argv[3] ?? 0)));
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
  const closed = new Promise((resolve) => { transport.onclose = resolve; });
  await client.close();
  await closed;
  console.log(JSON.stringify({
    subprotocol: transport._socket?.protocol ?? null,
    serverVersion: client.getServerVersion(),
    tools: tools.tools.map((t) => t.name).sort(),
    echoed: echoed.content,
    sent: text,
    added: added.content,
    invalid,
  }));
  clearTimeout(timer);
} catch (error) {
  console.error(String(error?.stack ?? error));
  process.exit(2);
}
