import { combineReducers, configureStore } from "@reduxjs/toolkit";

import { api } from "@/lib/api-client";
import { liveSlice } from "@/lib/live/slice";
import { sessionSlice } from "@/lib/session";

const reducer = combineReducers({
  [api.reducerPath]: api.reducer,
  session: sessionSlice.reducer,
  live: liveSlice.reducer,
});

export type RootState = ReturnType<typeof reducer>;

export function makeStore(preloaded?: Partial<RootState>) {
  return configureStore({
    reducer,
    preloadedState: preloaded as RootState | undefined,
    middleware: (getDefault) =>
      // Live batches can be large: skip the dev-only checks that walk every action.
      getDefault({ serializableCheck: false, immutableCheck: false }).concat(api.middleware),
  });
}

export type AppStore = ReturnType<typeof makeStore>;
export type AppDispatch = AppStore["dispatch"];
