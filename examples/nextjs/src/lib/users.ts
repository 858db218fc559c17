import users from "./demo-users.json";
import type { DemoUser } from "./types";

/** The edge demo's cast (demo/routes.py): two businesses, two people each. */
export const DEMO_USERS: readonly DemoUser[] = users;

export function demoUser(id: string | undefined): DemoUser | null {
  return DEMO_USERS.find((user) => user.id === id) ?? null;
}
