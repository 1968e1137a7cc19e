// Connects the official TypeScript SDK client over Streamable HTTP and prints what it saw as JSON.
// Usage: node streamable_client.mjs http://127.0.0.1:PORT/mcp everything|notes
//   everything: examples/everything_server.py (tools, progress, elicitation, a resumed stream)
//   notes:      examples/notes_server.py (a resource update on the standalone GET stream)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.argv[2]);
const fixture = process.argv[3];
const requests = []; // every HTTP request the transport made: method, and what it resumed from
const fetchAndRecord = async (input, init) => {
  const headers = new Headers(init?.headers);
  const response = await fetch(input, init);
  requests.push({
    method: init?.method ?? "GET",
    lastEventId: headers.get("last-event-id"),
    status: response.status,
    contentType: response.headers.get("content-type"),
  });
  return response;
};
const client = new Client({ name: "interop-ts", version: "1.0.0" }, { capabilities: { elicitation: {} } });
const transport = new StreamableHTTPClientTransport(url, { fetch: fetchAndRecord });
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 30000);
const seen = { fixture };
const logs = [];
const updates = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params.data); });
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updates.push(n.params.uri); });
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  seen.elicitationMessage = request.params.message;
  return { action: "accept", content: { response: "oui" } };
});
const until = async (check) => { while (!check()) await new Promise((r) => setTimeout(r, 10)); };

try {
  await client.connect(transport);
  seen.protocolVersion = transport.protocolVersion ?? null;
  seen.serverVersion = client.getServerVersion();
  seen.sessionIdLength = transport.sessionId?.length ?? 0;
  if (fixture === "everything") {
    seen.tools = (await client.listTools()).tools.map((t) => t.name).sort();
    seen.simple = (await client.callTool({ name: "test_simple_text", arguments: {} })).content;
    const progress = [];
    const withProgress = await client.callTool(
      { name: "test_tool_with_progress", arguments: {} }, undefined,
      { onprogress: (p) => progress.push([p.progress, p.total, p.message]) },
    );
    seen.progressAnswer = withProgress.content;
    seen.progress = progress;
    seen.logged = (await client.callTool({ name: "test_tool_with_logging", arguments: {} })).content;
    await until(() => logs.length >= 3);
    seen.logs = logs;
    seen.elicited = (await client.callTool({ name: "test_elicitation", arguments: { message: "Bonjour?" } })).content;
    const tokens = [];
    seen.reconnected = (await client.callTool(
      { name: "test_reconnection", arguments: {} }, undefined,
      { onresumptiontoken: (token) => tokens.push(token) },
    )).content;
    seen.resumptionTokens = tokens.length;
    seen.prompt = (await client.getPrompt({ name: "test_prompt_with_arguments", arguments: { arg1: "x", arg2: "y" } })).messages;
  } else {
    await client.subscribeResource({ uri: "note://welcome" });
    await client.callTool({ name: "add_note", arguments: { name: "welcome", text: "edited" } });
    await until(() => updates.length >= 1);
    seen.updates = updates;
    seen.read = (await client.readResource({ uri: "note://welcome" })).contents;
  }
  await client.ping();
  await transport.terminateSession();
  seen.requests = requests;
  console.log(JSON.stringify(seen));
  await client.close();
  clearTimeout(timer);
} catch (error) {
  console.error(String(error?.stack ?? error));
  console.error(JSON.stringify(requests));
  process.exit(2);
}
