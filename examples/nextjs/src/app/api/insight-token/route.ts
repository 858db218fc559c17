// POST /api/insight-token: a fresh Insight token for the signed-in demo user, signed here on
// the server (the secret never reaches the browser). insight.js calls it through getToken for
// the first connection, after a 4401, and to renew in band before `exp`.
import { NextResponse } from "next/server";

import { TokenConfigError, signInsightToken } from "@/lib/jwt";
import { currentUser } from "@/lib/session";

export const dynamic = "force-dynamic";

const NO_STORE = { "Cache-Control": "no-store" };

export async function POST(): Promise<NextResponse> {
  const user = await currentUser();
  if (!user) {
    return NextResponse.json({ detail: "not signed in" }, { status: 401, headers: NO_STORE });
  }
  try {
    const token = signInsightToken(user);
    return NextResponse.json({ token, user: user.id }, { headers: NO_STORE });
  } catch (error) {
    if (error instanceof TokenConfigError) {
      return NextResponse.json({ detail: error.message }, { status: 500, headers: NO_STORE });
    }
    throw error;
  }
}
