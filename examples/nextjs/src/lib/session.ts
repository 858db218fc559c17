// Who is signed in: a demo user's id in an HTTP-only cookie, set by the sign-in server action.
// A stand-in for the seed's real authentication; the token itself is never stored in the browser
// beyond memory, and never put in a URL.
import { cookies } from "next/headers";

import type { DemoUser } from "./types";
import { demoUser } from "./users";

export const SESSION_COOKIE = "insight_demo_user";

export async function currentUser(): Promise<DemoUser | null> {
  const jar = await cookies();
  return demoUser(jar.get(SESSION_COOKIE)?.value);
}
