// A fake OpenID Connect provider on loopback, for the browser tests: real discovery, JWKS
// and token answers, ID tokens signed with ES256 (P-256), the authorization code flow with
// PKCE (S256) checked as a provider would. Its one user signs in without a login form.

import { createServer } from "node:http";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";

const b64url = (data) => Buffer.from(data).toString("base64url");

export const USER = { sub: "user-1", email: "alice@example.com" };

/**
 * Starts the provider; resolves to { issuer, close(), requests } once it listens.
 * `clientId` and `clientSecret` are the only client it knows.
 */
export async function startIdp({ clientId, clientSecret }) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "k1", use: "sig", alg: "ES256" };
  // code → what the authorization request asked for.
  const codes = new Map();
  const requests = [];
  let issuer = "";

  function idToken(nonce) {
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: "ES256", kid: "k1", typ: "JWT" }));
    const claims = b64url(JSON.stringify({
      iss: issuer, sub: USER.sub, aud: clientId, iat: now, exp: now + 300,
      nonce, email: USER.email, email_verified: true,
    }));
    const input = `${header}.${claims}`;
    // JOSE wants the raw r‖s signature, not DER.
    const signature = sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
    return `${input}.${b64url(signature)}`;
  }

  function json(res, status, body) {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(body));
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url, issuer);
    requests.push(`${req.method} ${url.pathname}`);
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      return json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["ES256"],
        scopes_supported: ["openid", "email", "profile"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        code_challenge_methods_supported: ["S256"],
      });
    }
    if (req.method === "GET" && url.pathname === "/jwks") {
      return json(res, 200, { keys: [jwk] });
    }
    if (req.method === "GET" && url.pathname === "/authorize") {
      const q = url.searchParams;
      if (q.get("client_id") !== clientId || q.get("response_type") !== "code" ||
          q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) {
        res.writeHead(400, { "content-type": "text/plain" });
        return res.end("bad authorization request");
      }
      const code = randomBytes(16).toString("hex");
      codes.set(code, {
        nonce: q.get("nonce"),
        challenge: q.get("code_challenge"),
        redirect: q.get("redirect_uri"),
      });
      const back = new URL(q.get("redirect_uri"));
      back.searchParams.set("code", code);
      back.searchParams.set("state", q.get("state"));
      res.writeHead(302, { location: back.toString() });
      return res.end();
    }
    if (req.method === "POST" && url.pathname === "/token") {
      let body = "";
      req.on("data", (chunk) => { body += chunk; });
      req.on("end", () => {
        const form = new URLSearchParams(body);
        const basic = (req.headers.authorization || "").replace(/^Basic /, "");
        const [id, secret] = Buffer.from(basic, "base64").toString().split(":").map(decodeURIComponent);
        const clientOk = (id === clientId && secret === clientSecret) ||
          (form.get("client_id") === clientId && form.get("client_secret") === clientSecret);
        const grant = codes.get(form.get("code"));
        codes.delete(form.get("code"));
        const verifier = form.get("code_verifier") || "";
        const challenge = createHash("sha256").update(verifier).digest("base64url");
        if (!clientOk) {
          return json(res, 401, { error: "invalid_client" });
        }
        if (!grant || grant.challenge !== challenge || grant.redirect !== form.get("redirect_uri")) {
          return json(res, 400, { error: "invalid_grant" });
        }
        return json(res, 200, {
          access_token: randomBytes(16).toString("hex"),
          token_type: "Bearer",
          expires_in: 3600,
          id_token: idToken(grant.nonce),
        });
      });
      return undefined;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    return res.end("not found");
  });

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
