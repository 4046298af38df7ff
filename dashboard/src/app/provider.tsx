import { useEffect, useMemo, type ReactNode } from "react";
import { Toaster } from "react-hot-toast";
import { Provider, useSelector } from "react-redux";

import { makeStore, type AppStore, type RootState } from "@/app/store";
import { ThemeProvider } from "@/components/theme";
import { LiveClient } from "@/lib/live/client";
import { LiveContext } from "@/lib/live/context";

function Live({ children, store, connect }: { children: ReactNode; store: AppStore; connect: boolean }) {
  const token = useSelector((s: RootState) => s.session.session?.token);
  const client = useMemo(() => new LiveClient(store.dispatch), [store]);
  useEffect(() => {
    if (!token || !connect) return;
    client.watch("alerts");
    client.watch("system");
    client.connect(token);
    return () => client.disconnect();
  }, [client, token, connect]);
  return <LiveContext.Provider value={client}>{children}</LiveContext.Provider>;
}

export function AppProvider({
  children,
  store,
  connectLive = true,
}: {
  children: ReactNode;
  store?: AppStore;
  connectLive?: boolean; // tests of components alone have no Socket.IO server
}) {
  const theStore = useMemo(() => store ?? makeStore(), [store]);
  return (
    <Provider store={theStore}>
      <ThemeProvider>
        <Live store={theStore} connect={connectLive}>
          {children}
          <Toaster position="top-right" />
        </Live>
      </ThemeProvider>
    </Provider>
  );
}
