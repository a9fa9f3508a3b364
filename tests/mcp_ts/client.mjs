// The official TypeScript MCP client against Keyturn's /mcp: list the tools, call two, print JSON.
//   node client.mjs URL API_KEY USER ECHO_TOOL AUTH_TOOL
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, apiKey, user, echoTool, authTool] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${apiKey}`, "Keyturn-User-Id": user } },
});
const client = new Client({ name: "keyturn-ts-test", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
const echo = await client.callTool({ name: echoTool, arguments: { text: "from typescript" } });
const auth = await client.callTool({ name: authTool, arguments: {} });
console.log(
  JSON.stringify({
    protocolVersion: transport.protocolVersion,
    tools: tools.tools.map((t) => t.name),
    echo,
    auth,
  }),
);
await client.close();
