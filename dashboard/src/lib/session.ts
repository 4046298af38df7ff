// Who is logged in: the token and role, kept in localStorage so a reload stays logged in.
import { createSlice, type PayloadAction } from "@reduxjs/toolkit";

import type { Role, Token } from "@/types/api";

const KEY = "iotmon.session";
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export interface Session {
  token: string;
  username: string;
  role: Role;
  expiresAt: string;
}

export interface SessionState {
  session: Session | null;
}

function load(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    return new Date(s.expiresAt).getTime() > Date.now() ? s : null;
  } catch {
    return null;
  }
}

export const sessionSlice = createSlice({
  name: "session",
  initialState: (): SessionState => ({ session: load() }),
  reducers: {
    loggedIn(state, action: PayloadAction<Token>) {
      const t = action.payload;
      state.session = {
        token: t.accessToken,
        username: t.username,
        role: t.role,
        expiresAt: t.expiresAt,
      };
      localStorage.setItem(KEY, JSON.stringify(state.session));
    },
    loggedOut(state) {
      state.session = null;
      localStorage.removeItem(KEY);
    },
  },
});

export const { loggedIn, loggedOut } = sessionSlice.actions;

export function can(session: Session | null, role: Role): boolean {
  return session !== null && RANK[session.role] >= RANK[role];
}

export const selectSession = (state: { session: SessionState }) => state.session.session;
