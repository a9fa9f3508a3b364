// panva's oidc-provider on 127.0.0.1 for Keyturn's end-to-end tests (driven by tests/plugins/oidc.py).
//
//   node server.mjs [--port N] [--config JSON]
//
// Once listening it prints ONE line on stdout: {"issuer": "http://127.0.0.1:PORT", "port": PORT}.
// Everything else (errors) goes to stderr.
//
// Inputs (argv wins over env):
//   --port N / PORT              listen port on 127.0.0.1; 0 (default) picks a free one
//   --config JSON / OIDC_CONFIG  {"clients": [...], "access_ttl": s, "refresh_ttl": s, "issue_refresh_token": "always"|"offline_access",
//                                "jwt_resources": ["http://127.0.0.1:PORT/mcp", ...]}
//   ACCESS_TTL                   access token lifetime in seconds (default 3600; "access_ttl" in the config wins)
//   ISSUE_REFRESH                "always" (default) or "offline_access" ("issue_refresh_token" in the config wins)
//
// Behaviour:
// - PKCE is required for every client and every authorization request; S256 is the only method (oidc-provider 9).
// - Refresh tokens: with "always" every client allowed the refresh_token grant gets one on the code exchange;
//   with "offline_access" only when that scope was granted (oidc-provider drops offline_access unless the
//   authorization request also says prompt=consent). Refresh tokens rotate on every use.
// - Scopes: openid email profile offline_access, plus the API scopes repo read write. API scopes are granted for the
//   resource server "urn:keyturn:api": when a request asks for any of them the access token is for that API (its
//   token answer's scope lists the API scopes; such a token is not accepted by /me, the userinfo endpoint). Ask for
//   OIDC scopes only to get a userinfo token. The id_token is issued whenever openid was asked.
// - Claims: sub (= account id), email (= ID@example.test), email_verified (false for accounts whose id starts
//   with "unverified", true otherwise), name; in the id_token too (conformIdTokenClaims off) as well as from
//   userinfo.
// - JWKS generated at start: one RS256 and one ES256 key (id_tokens RS256 unless the client says otherwise).
// - RFC 9207: the authorization response carries iss (oidc-provider 9 default).
// - "jwt_resources": resource servers (RFC 8707 resource indicators) whose access tokens are JWTs (RFC 9068,
//   RS256, aud = the resource, scope "mcp:tools"): an MCP server checking tokens with mcp.auth: jwt.
// - Redirect URIs: an exact match, or a loopback one (http://127.0.0.1/..., http://localhost/...) registered
//   without a port matches the same URI on any port (RFC 8252 7.3); a registered path ending in "*" matches any
//   path with that prefix.
// - Default clients (when the config names none): "basic-client"/"basic-secret" (client_secret_basic) and
//   "post-client"/"post-secret" (client_secret_post), both with redirect_uris ["http://127.0.0.1/*"].
// - Login and consent without forms (devInteractions off): GET /interaction/:uid logs in the account named by
//   ?login_hint= on that URL, else the authorization request's login_hint, else "alice", and grants everything
//   asked for; a plain HTTP client that keeps cookies can follow the redirects.
// Test routes (never in a real provider):
//   POST /test/clients   JSON client metadata (client_id/client_secret generated when absent) -> 201 metadata
//   POST /test/revoke?account=ID  destroys every grant of the account and its tokens -> 204 ("user removed the app")
import crypto from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const config = JSON.parse(argValue("--config") ?? process.env.OIDC_CONFIG ?? "{}");
const port = Number(argValue("--port") ?? process.env.PORT ?? "0");
const accessTtl = Number(config.access_ttl ?? process.env.ACCESS_TTL ?? "3600");
const refreshTtl = Number(config.refresh_ttl ?? 86400);
const issueRefresh = config.issue_refresh_token ?? process.env.ISSUE_REFRESH ?? "always";
const API = "urn:keyturn:api";
const API_SCOPES = ["repo", "read", "write"];
const JWT_RESOURCES = config.jwt_resources ?? [];
const MCP_SCOPES = ["mcp:tools"];

function baseClient(c) {
  return {
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
    ...c,
  };
}

const clients = (
  config.clients ?? [
    { client_id: "basic-client", client_secret: "basic-secret", redirect_uris: ["http://127.0.0.1/*"] },
    {
      client_id: "post-client",
      client_secret: "post-secret",
      redirect_uris: ["http://127.0.0.1/*"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ]
).map(baseClient);

function makeKey(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: "jwk" });
  return { ...jwk, alg, use: "sig", kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString("hex")}` };
}
const jwks = {
  keys: [makeKey("rsa", { modulusLength: 2048 }, "RS256"), makeKey("ec", { namedCurve: "P-256" }, "ES256")],
};

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(port, "127.0.0.1", resolve);
});
const listenPort = server.address().port;
const issuer = `http://127.0.0.1:${listenPort}`;
const grantsByAccount = new Map();

const provider = new Provider(issuer, {
  clients,
  jwks,
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => {
        if (oneOf) return oneOf[0];
        const asked = String(ctx.oidc.params?.scope ?? "").split(" ");
        if (JWT_RESOURCES.length && asked.some((s) => MCP_SCOPES.includes(s))) return JWT_RESOURCES[0];
        return asked.some((s) => API_SCOPES.includes(s)) ? API : undefined;
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (JWT_RESOURCES.includes(resource)) {
          return {
            scope: MCP_SCOPES.join(" "),
            audience: resource,
            accessTokenFormat: "jwt",
            accessTokenTTL: accessTtl,
            jwt: { sign: { alg: "RS256" } },
          };
        }
        if (resource !== API) throw new Error(`unknown resource ${resource}`);
        return { scope: API_SCOPES.join(" "), accessTokenFormat: "opaque", accessTokenTTL: accessTtl };
      },
    },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed("refresh_token") && (issueRefresh === "always" || code.scopes.has("offline_access")),
  scopes: ["openid", "email", "profile", "offline_access", ...API_SCOPES, ...MCP_SCOPES],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  ttl: {
    AccessToken: accessTtl,
    AuthorizationCode: 120,
    IdToken: 3600,
    RefreshToken: refreshTtl,
    Grant: refreshTtl,
    Interaction: 600,
    Session: 86400,
  },
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.test`,
      email_verified: !id.startsWith("unverified"),
      name: id,
    }),
  }),
  renderError: async (ctx, out) => {
    ctx.type = "application/json";
    ctx.body = out;
  },
});

function stripPort(value) {
  let url;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" || !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) return undefined;
  url.port = "";
  return url.href;
}

provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
  if (this.redirectUris.includes(value)) return true;
  const bare = stripPort(value);
  if (bare === undefined) return false;
  return this.redirectUris.some((registered) => {
    if (new URL(registered).port !== "") return false;
    const pattern = stripPort(registered);
    if (pattern === undefined) return false;
    return pattern.endsWith("*") ? bare.startsWith(pattern.slice(0, -1)) : bare === pattern;
  });
};

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

async function finishInteraction(ctx, uid) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, "interaction cookie does not match the URL");
  const options = { mergeWithLastSubmission: false };
  if (details.prompt.name === "login") {
    const accountId = ctx.query.login_hint || details.params.login_hint || "alice";
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId } }, options);
  }
  const accountId = details.session.accountId;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  const missing = details.prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(" "));
  }
  const grantId = await grant.save();
  if (!grantsByAccount.has(accountId)) grantsByAccount.set(accountId, new Set());
  grantsByAccount.get(accountId).add(grantId);
  return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, options);
}

async function registerClient(ctx) {
  const body = await readJson(ctx.req);
  const metadata = baseClient({
    client_id: `client-${crypto.randomBytes(8).toString("hex")}`,
    client_secret: crypto.randomBytes(24).toString("base64url"),
    ...body,
  });
  await provider.Client.validate(metadata);
  await provider.Client.adapter.upsert(metadata.client_id, metadata);
  ctx.status = 201;
  ctx.body = metadata;
}

async function revokeAccount(ctx) {
  const account = ctx.query.account;
  for (const grantId of grantsByAccount.get(account) ?? []) {
    await provider.Grant.adapter.destroy(grantId);
    for (const model of ["AccessToken", "RefreshToken", "AuthorizationCode"]) {
      await provider[model].adapter.revokeByGrantId(grantId);
    }
  }
  grantsByAccount.delete(account);
  ctx.status = 204;
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  try {
    if (match && ctx.method === "GET") return await finishInteraction(ctx, match[1]);
    if (ctx.path === "/test/clients" && ctx.method === "POST") return await registerClient(ctx);
    if (ctx.path === "/test/revoke" && ctx.method === "POST") return await revokeAccount(ctx);
  } catch (err) {
    ctx.status = err.status ?? 400;
    ctx.body = { error: err.error ?? "test_route_failed", error_description: err.error_description ?? err.message };
    return undefined;
  }
  return next();
});

server.on("request", provider.callback());
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ issuer, port: listenPort })}\n`);
