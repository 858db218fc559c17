// Sign in: choose one of the demo users (two businesses). The session is an HTTP-only cookie;
// the Insight token is signed later, on demand, by /api/insight-token.
import { redirect } from "next/navigation";

import { signIn } from "@/app/actions";
import { currentUser } from "@/lib/session";
import { DEMO_USERS } from "@/lib/users";

export default async function SignInPage() {
  if (await currentUser()) redirect("/orders");
  const businesses = [...new Set(DEMO_USERS.map((user) => user.business_id))];
  return (
    <main className="signin">
      <h1>
        Insight <span>Next.js example</span>
      </h1>
      <p className="muted">
        Sign in as a demo user. Open two windows as two people of one business: both see the
        business&apos;s metrics, each sees only their own toasts.
      </p>
      <form action={signIn} className="businesses">
        {businesses.map((business) => (
          <fieldset key={business}>
            <legend>{business}</legend>
            {DEMO_USERS.filter((user) => user.business_id === business).map((user) => (
              <button key={user.id} type="submit" name="user" value={user.id} className="user" data-user={user.id}>
                <b>{user.name}</b>
                <small>{business}</small>
              </button>
            ))}
          </fieldset>
        ))}
      </form>
    </main>
  );
}
