// panva's oidc-provider on 127.0.0.1 for Keyturn's end-to-end tests.
//   node server.mjs            -> prints {"issuer": "http://127.0.0.1:PORT"} once listening
// Environment: ACCESS_TTL (seconds, default 3600).
// - PKCE is required for every client (S256 is the only method oidc-provider 9 knows);
// - refresh tokens are issued to clients allowed the refresh_token grant and rotate on every use;
// - clients register themselves (RFC 7591 dynamic registration, open) with their redirect URIs;
// - login and consent are finished without a form: GET /interaction/:uid logs in the account named by
//   login_hint (default "alice") and grants what was asked, so a plain HTTP client can follow redirects;
// - POST /test/revoke?account=ID revokes every grant of an account ("the user removed the app").
import http from "node:http";
import Provider from "oidc-provider";

const accessTtl = Number(process.env.ACCESS_TTL ?? "3600");
const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const grantsByAccount = new Map();

const provider = new Provider(issuer, {
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed("refresh_token"),
  scopes: ["openid", "offline_access", "email", "profile"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  ttl: { AccessToken: accessTtl, IdToken: 3600, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
  cookies: { keys: ["keyturn-e2e-cookie-key-0123456789"] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.test`, email_verified: true, name: id }),
  }),
  renderError: async (ctx, out) => {
    ctx.type = "application/json";
    ctx.body = out;
  },
});

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (match && ctx.method === "GET") {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.prompt.name === "login") {
      const accountId = details.params.login_hint || "alice";
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId } }, { mergeWithLastSubmission: false });
    }
    const accountId = details.session.accountId;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    if (!grantsByAccount.has(accountId)) grantsByAccount.set(accountId, new Set());
    grantsByAccount.get(accountId).add(grantId);
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (ctx.path === "/test/revoke" && ctx.method === "POST") {
    const account = ctx.query.account;
    for (const grantId of grantsByAccount.get(account) ?? []) {
      await provider.Grant.adapter.destroy(grantId);
      for (const model of ["AccessToken", "RefreshToken", "AuthorizationCode"]) {
        await provider[model].adapter.revokeByGrantId(grantId);
      }
    }
    grantsByAccount.delete(account);
    ctx.status = 204;
    return undefined;
  }
  return next();
});

server.on("request", provider.callback());
process.on("SIGTERM", () => server.close(() => process.exit(0)));
console.log(JSON.stringify({ issuer }));
