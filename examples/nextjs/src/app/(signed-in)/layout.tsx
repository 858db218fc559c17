// Every page of a signed-in user: the seed's providers (UI events + Toaster) around them.
import { redirect } from "next/navigation";
import type { ReactNode } from "react";

import { signOut } from "@/app/actions";
import { Providers } from "@/app/providers";
import { Celebrations } from "@/components/celebrations";
import { ConnectionBadge } from "@/components/connection-badge";
import { JobsProvider } from "@/components/jobs";
import { NavLink } from "@/components/nav-link";
import { currentUser } from "@/lib/session";

export default async function SignedInLayout({ children }: { children: ReactNode }) {
  const user = await currentUser();
  if (!user) redirect("/");
  return (
    <Providers user={user}>
      <JobsProvider>
        <header className="topbar">
          <h1>
            Insight <span>Next.js</span>
          </h1>
          <nav>
            <NavLink href="/orders">Orders</NavLink>
            <NavLink href="/dashboard">Dashboard</NavLink>
          </nav>
          <span className="who" data-user={user.id} data-business={user.business_id}>
            {user.name} · {user.business_id}
          </span>
          <ConnectionBadge />
          <form action={signOut}>
            <button type="submit" className="link">
              Sign out
            </button>
          </form>
        </header>
        <main>
          <Celebrations />
          {children}
        </main>
      </JobsProvider>
    </Providers>
  );
}
