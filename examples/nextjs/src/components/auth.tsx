"use client";
// Small stand-ins for the seed's own providers: useAuth (who is signed in), RoleProvider and
// BusinessProvider. The real app has its own; providers.tsx uses them in the seed's shape.
import { createContext, useContext, useMemo, type ReactNode } from "react";

import { jobApi, type JobApi } from "@/lib/insight-client";
import type { DemoUser } from "@/lib/types";

const AuthContext = createContext<{ user: DemoUser | null }>({ user: null });

export function AuthProvider({ user, children }: { user: DemoUser | null; children: ReactNode }) {
  const value = useMemo(() => ({ user }), [user]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): { user: DemoUser | null } {
  return useContext(AuthContext);
}

export type Role = "owner" | "staff";
const RoleContext = createContext<Role>("staff");

export function RoleProvider({ user, children }: { user: DemoUser | null; children: ReactNode }) {
  // Everyone in the demo may create and pay orders; the first member of each business owns it.
  const role: Role = user?.id === "alice" || user?.id === "carol" ? "owner" : "staff";
  return <RoleContext.Provider value={role}>{children}</RoleContext.Provider>;
}

export function useRole(): Role {
  return useContext(RoleContext);
}

const BusinessContext = createContext<string | null>(null);

export function BusinessProvider({
  initialBusinessId,
  children,
}: {
  initialBusinessId: string | undefined;
  children: ReactNode;
}) {
  return <BusinessContext.Provider value={initialBusinessId ?? null}>{children}</BusinessContext.Provider>;
}

export function useBusinessId(): string | null {
  return useContext(BusinessContext);
}

/** The job API as the signed-in user. */
export function useJobApi(): JobApi {
  const { user } = useAuth();
  const id = user?.id;
  return useMemo(() => {
    if (!id) throw new Error("useJobApi: nobody is signed in");
    return jobApi(id);
  }, [id]);
}
