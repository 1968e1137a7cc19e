// Many sessions of the official TypeScript SDK client, each making many tool calls; prints a tally as JSON.
// Usage: node load_client.mjs URL sse|streamable SESSIONS CALLS CONCURRENCY
//   Every session connects, calls the `echo` tool CALLS times with a text of its own and checks each
//   answer exactly, then closes. At most CONCURRENCY sessions run at once.
//   Output: {"sessions": N done, "calls": answers that matched, "errors": [first failures]}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [urlText, kind, sessionsText, callsText, concurrencyText] = process.argv.slice(2);
const url = new URL(urlText);
const sessions = Number(sessionsText);
const calls = Number(callsText);
const concurrency = Number(concurrencyText);
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 90000);

const tally = { sessions: 0, calls: 0, errors: [] };
const fail = (what) => { if (tally.errors.length < 20) tally.errors.push(what); };

async function runSession(index) {
  const client = new Client({ name: "interop-ts-load", version: "1.0.0" });
  const transport = kind === "sse" ? new SSEClientTransport(url) : new StreamableHTTPClientTransport(url);
  try {
    await client.connect(transport);
    for (let call = 0; call < calls; call++) {
      const text = `session ${index} call ${call} ✓`;
      const result = await client.callTool({ name: "echo", arguments: { text } });
      const expected = JSON.stringify([{ type: "text", text }]);
      if (JSON.stringify(result.content) === expected && !result.isError) {
        tally.calls += 1;
      } else {
        fail(`session ${index} call ${call}: ${JSON.stringify(result)}`);
      }
    }
    tally.sessions += 1;
  } catch (error) {
    fail(`session ${index}: ${String(error?.stack ?? error)}`);
  } finally {
    await client.close().catch((error) => fail(`session ${index} close: ${error}`));
  }
}

let next = 0;
async function lane() {
  while (next < sessions) {
    const index = next++;
    await runSession(index);
  }
}

await Promise.all(Array.from({ length: concurrency }, lane));
clearTimeout(timer);
console.log(JSON.stringify(tally));
