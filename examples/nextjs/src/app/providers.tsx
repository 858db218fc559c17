"use client";
// The seed's src/app/providers.tsx: ProvidersInner connects the UI events once for the whole
// app (`useUIEvents()`, as the seed calls it: the token comes from this app's own
// /api/insight-token, the hook's default) and renders sonner's <Toaster />.
// (I18nextProvider is left out: this example has no i18n.)
import { createContext, useContext, type ReactNode } from "react";
import { Toaster } from "sonner";

import { AuthProvider, BusinessProvider, RoleProvider, useAuth } from "@/components/auth";
import type { ConnectionStatus } from "@/hooks/insight";
import { useUIEvents } from "@/hooks/useUIEvents";
import type { DemoUser } from "@/lib/types";

const ConnectionContext = createContext<ConnectionStatus>("idle");

/** The socket's state, for a status badge. */
export function useConnectionStatus(): ConnectionStatus {
  return useContext(ConnectionContext);
}

function ProvidersInner({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  const { status } = useUIEvents(); // ✅ Подключаем UI events

  return (
    <RoleProvider user={user}>
      <BusinessProvider initialBusinessId={user?.business_id}>
        <ConnectionContext.Provider value={status}>
          {children}
          <Toaster position="top-right" richColors /> {/* ✅ Toast notifications */}
        </ConnectionContext.Provider>
      </BusinessProvider>
    </RoleProvider>
  );
}

export function Providers({ user, children }: { user: DemoUser; children: ReactNode }) {
  return (
    <AuthProvider user={user}>
      <ProvidersInner key={user.id}>{children}</ProvidersInner>
    </AuthProvider>
  );
}
