"use server";

import { cookies, headers } from "next/headers";
import { redirect } from "next/navigation";

import { SESSION_COOKIE } from "@/lib/session";
import { demoUser } from "@/lib/users";

/** The sign-in form: remember the chosen demo user, then go to the orders page. */
export async function signIn(form: FormData): Promise<void> {
  const user = demoUser(String(form.get("user") ?? ""));
  if (!user) redirect("/");
  const origin = (await headers()).get("origin") ?? "";
  (await cookies()).set(SESSION_COOKIE, user.id, {
    httpOnly: true,
    sameSite: "lax",
    path: "/",
    secure: origin.startsWith("https:"),
  });
  redirect("/orders");
}

export async function signOut(): Promise<void> {
  (await cookies()).delete(SESSION_COOKIE);
  redirect("/");
}
