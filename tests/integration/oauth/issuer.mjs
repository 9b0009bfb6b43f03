// A real OAuth 2.1 authorization server for the tests: oidc-provider issuing JWT access tokens
// with the client_credentials grant for a resource indicator (RFC 8707).
//
//   node issuer.mjs CONFIG.json
//
// CONFIG: {"issuers": [{"port": N, "jwk": {private RSA JWK with kid}, "clients": [{"client_id",
// "client_secret", "scope", "tenants": [patterns]}]}]}. Each issuer is http://127.0.0.1:PORT.
// Prints one line "ready" once every issuer listens; stops on SIGTERM.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const servers = [];

for (const spec of config.issuers) {
  const tenantsOf = Object.fromEntries(spec.clients.map((c) => [c.client_id, c.tenants]));
  const provider = new Provider(`http://127.0.0.1:${spec.port}`, {
    clients: spec.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      ...(c.scope ? { scope: c.scope } : {}),
      token_endpoint_auth_method: 'client_secret_post',
    })),
    jwks: { keys: [spec.jwk] },
    scopes: ['mcp:admin', 'mcp:writer'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: 'mcp:admin mcp:writer',
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: (ctx, token) => {
      const tenants = tenantsOf[token.clientId];
      return tenants ? { mcp_tenants: tenants } : undefined;
    },
  });
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  servers.push(await new Promise((resolve) => {
    const server = provider.listen(spec.port, '127.0.0.1', () => resolve(server));
  }));
}

console.log('ready');
process.on('SIGTERM', () => {
  for (const server of servers) server.close();
  process.exit(0);
});
