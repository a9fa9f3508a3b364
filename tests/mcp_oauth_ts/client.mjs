// The TypeScript MCP SDK's own OAuth client against Keyturn (driven by tests/test_e2e_mcp_oauth.py).
//
//   node client.mjs MCP_URL REDIRECT_URI
//
// Uses @modelcontextprotocol/sdk as installed (from its lock file) by tests/mcp_conformance. Prints JSON lines:
// {"authorize": URL} when the SDK wants the person sent to the authorization server; it then reads ONE line on
// stdin, the URL the browser was sent back to (with code, state, iss); finally {"tools": [names]} or {"error": msg}.
import readline from "node:readline";
import { Client } from "../mcp_conformance/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js";
import { UnauthorizedError } from "../mcp_conformance/node_modules/@modelcontextprotocol/sdk/dist/esm/client/auth.js";
import { StreamableHTTPClientTransport } from "../mcp_conformance/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js";

const [mcpUrl, redirectUri] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

class HeadlessProvider {
  constructor() {
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK test client",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    say({ authorize: url.toString() });
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
}

try {
  const provider = new HeadlessProvider();
  const client = new Client({ name: "keyturn-ts-test", version: "1.0.0" });
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    const back = new URL((await lines.next()).value);
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
    await transport.finishAuth(back.searchParams.get("code"));
    await client.connect(transport);
  }
  const listed = await client.listTools();
  say({ tools: listed.tools.map((t) => t.name), client_id: provider.client?.client_id });
  await client.close();
  process.exit(0);
} catch (err) {
  say({ error: String(err?.message ?? err) });
  process.exit(1);
}
