// Server side only: sign the HS256 token that Insight's job API and edge accept, with the
// claims of core/security.py's issue_token (sub, business_id, name, iat, exp, and aud / iss
// when JWT_AUDIENCE / JWT_ISSUER are set). JWT_SECRET is the services' shared secret.
import { createHmac } from "node:crypto";

import type { DemoUser } from "./types";

const DEFAULT_TTL_SECONDS = 900;

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

export class TokenConfigError extends Error {}

export function signInsightToken(user: DemoUser, now: number = Date.now()): string {
  const secret = process.env.JWT_SECRET;
  if (!secret) throw new TokenConfigError("JWT_SECRET is not set (see .env.example)");
  const ttl = Number(process.env.INSIGHT_TOKEN_TTL_SECONDS ?? DEFAULT_TTL_SECONDS);
  if (!Number.isInteger(ttl) || ttl < 2) {
    throw new TokenConfigError("INSIGHT_TOKEN_TTL_SECONDS must be an integer of at least 2");
  }
  const iat = Math.floor(now / 1000);
  const claims: Record<string, string | number> = {
    sub: user.id,
    iat,
    exp: iat + ttl,
    business_id: user.business_id,
    name: user.name,
  };
  if (process.env.JWT_AUDIENCE) claims.aud = process.env.JWT_AUDIENCE;
  if (process.env.JWT_ISSUER) claims.iss = process.env.JWT_ISSUER;
  const signingInput = `${base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${base64url(
    JSON.stringify(claims),
  )}`;
  const signature = createHmac("sha256", secret).update(signingInput).digest();
  return `${signingInput}.${base64url(signature)}`;
}
