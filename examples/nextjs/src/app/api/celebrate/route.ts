// POST /api/celebrate: this app's own event (`ui_confetti`, declared in the services'
// INSIGHT_EVENT_MODULES: demo/events.py), published from this server through Insight's HTTP
// publish API with a server key, to every member of the signed-in user's business. The body
// is typed by the generated declarations, so a field the services would refuse (a 422) does
// not compile.
import { NextResponse } from "next/server";

import type { Celebration } from "@/hooks/insight";
import { currentUser } from "@/lib/session";

export const dynamic = "force-dynamic";

const API = process.env.INSIGHT_API_URL ?? process.env.NEXT_PUBLIC_INSIGHT_API ?? "http://127.0.0.1:8000";

export async function POST(): Promise<NextResponse> {
  const user = await currentUser();
  if (!user) return NextResponse.json({ detail: "not signed in" }, { status: 401 });
  const key = process.env.INSIGHT_PUBLISH_KEY;
  if (!key) {
    return NextResponse.json({ detail: "INSIGHT_PUBLISH_KEY is not set (see .env.example)" }, { status: 500 });
  }
  const event: Celebration = { type: "ui_confetti", by: user.name, message: "Celebrating with the whole team!" };
  const published = await fetch(`${API}/api/v1/publish`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: { business: user.business_id }, event }),
    cache: "no-store",
  });
  return NextResponse.json(await published.json(), { status: published.status });
}
