// Launches a server with the official TypeScript SDK client's StdioClientTransport, drives the
// tests/apps/stdio_app.py tools, and prints what it saw as JSON, with the server's stderr
// (close() ends the server's stdin and gives it 2 s before SIGTERM).
// Usage: node stdio_client.mjs COMMAND [ARGS...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [command, ...args] = process.argv.slice(2);
const text = "héllo ✓\nsecond line\t\"quoted\"";
const client = new Client({ name: "interop-ts-stdio", version: "1.0.0" });
const transport = new StdioClientTransport({ command, args, env: process.env, stderr: "pipe" });
let stderr = "";
transport.stderr.on("data", (chunk) => { stderr += chunk; });
const logs = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
  logs.push(notification.params.data);
});
const timer = setTimeout(() => { console.error("timed out\n" + stderr); process.exit(3); }, 30000);
try {
  await client.connect(transport);
  const pid = transport.pid;
  const tools = await client.listTools();
  const echoed = await client.callTool({ name: "echo", arguments: { text } });
  await client.setLoggingLevel("info");
  const progress = [];
  const chatty = await client.callTool({ name: "chatty", arguments: {} }, undefined, {
    onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]),
  });
  let invalid = null;
  try {
    await client.callTool({ name: "slow", arguments: { seconds: "soon" } });
  } catch (error) {
    invalid = { code: error.code, message: error.message };
  }
  await client.ping();
  await client.close();
  console.log(JSON.stringify({
    pid,
    serverVersion: client.getServerVersion(),
    tools: tools.tools.map((t) => t.name).sort(),
    echoed: echoed.content,
    sent: text,
    chatty: chatty.content,
    progress,
    logs,
    invalid,
    stderr,
  }));
  clearTimeout(timer);
} catch (error) {
  console.error(String(error?.stack ?? error) + "\n" + stderr);
  process.exit(2);
}
