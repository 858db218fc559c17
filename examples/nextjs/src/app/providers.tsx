"use client";
// The seed's src/app/providers.tsx: ProvidersInner connects the UI events once for the whole
// app and renders sonner's <Toaster />. Two things are added to the seed's `useUIEvents()`
// call: where the token comes from (this app's own server side), and the seed's console
// lines when the socket is live. (I18nextProvider is left out: this example has no i18n.)
import { createContext, useContext, useEffect, type ReactNode } from "react";
import { Toaster } from "sonner";

import { AuthProvider, BusinessProvider, RoleProvider, useAuth } from "@/components/auth";
import type { ConnectionStatus } from "@/hooks/insight";
import { useUIEvents } from "@/hooks/useUIEvents";
import { fetchInsightToken } from "@/lib/insight-client";
import type { DemoUser } from "@/lib/types";

const ConnectionContext = createContext<ConnectionStatus>("idle");

/** The socket's state, for a status badge. */
export function useConnectionStatus(): ConnectionStatus {
  return useContext(ConnectionContext);
}

function logStatus(status: ConnectionStatus): void {
  if (status === "open") console.log("✅ UI Events WebSocket connected");
}

function ProvidersInner({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  const { isConnected, status } = useUIEvents({
    getToken: fetchInsightToken,
    onStatus: logStatus,
    storageKey: `insight:cursor:${user?.id ?? "anonymous"}`,
  }); // ✅ Подключаем UI events

  useEffect(() => {
    if (isConnected) console.log("✅ UI Events system active");
  }, [isConnected]);

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
