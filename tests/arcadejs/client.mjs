// Drives @arcadeai/arcadejs against a Keyturn engine for tests/test_arcadejs_compat.py.
// Usage: ARCADE_BASE_URL=... ARCADE_API_KEY=... node client.mjs '{"op": "start", ...}'
// Prints one JSON line: the client's answer, or {"error": {"status", "message"}}.
import Arcade from "@arcadeai/arcadejs";

const client = new Arcade({
  baseURL: process.env.ARCADE_BASE_URL,
  apiKey: process.env.ARCADE_API_KEY,
  maxRetries: 0,
});
const args = JSON.parse(process.argv[2] ?? "{}");

async function run(a) {
  switch (a.op) {
    case "start":
      return client.auth.start(a.user_id, a.provider, { scopes: a.scopes ?? [] });
    case "wait":
      return client.auth.waitForCompletion(a.id);
    case "status":
      return client.auth.status({ id: a.id, wait: a.wait });
    case "confirm":
      return client.auth.confirmUser({ flow_id: a.flow_id, user_id: a.user_id });
    case "tools_list": {
      const page = await client.tools.list({ limit: a.limit ?? 50 });
      return { items: page.items };
    }
    case "authorize_tool":
      return client.tools.authorize({ tool_name: a.tool_name, user_id: a.user_id });
    case "execute":
      return client.tools.execute({ tool_name: a.tool_name, input: a.input ?? {}, user_id: a.user_id });
    case "health":
      return client.health.check();
    default:
      throw new Error(`unknown op ${a.op}`);
  }
}

try {
  console.log(JSON.stringify(await run(args)));
} catch (err) {
  console.log(JSON.stringify({ error: { status: err.status ?? null, message: String(err.message ?? err) } }));
}
