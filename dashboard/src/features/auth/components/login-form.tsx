import { useState, type FormEvent } from "react";
import { useDispatch } from "react-redux";

import { useLoginMutation } from "@/features/auth/api/login";
import { errorMessage } from "@/lib/api-client";
import { loggedIn } from "@/lib/session";

export function LoginForm() {
  const dispatch = useDispatch();
  const [login, { isLoading, error }] = useLoginMutation();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");

  async function submit(e: FormEvent) {
    e.preventDefault();
    const result = await login({ username, password });
    if ("data" in result && result.data) dispatch(loggedIn(result.data));
  }

  return (
    <form className="login panel" onSubmit={submit} aria-label="Log in">
      <h1>iotmon</h1>
      <label>
        User name
        <input
          name="username"
          autoComplete="username"
          required
          value={username}
          onChange={(e) => setUsername(e.target.value)}
        />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
      </label>
      {error ? (
        <p role="alert" className="error-text">
          {errorMessage(error)}
        </p>
      ) : null}
      <button type="submit" disabled={isLoading}>
        {isLoading ? "Logging in…" : "Log in"}
      </button>
    </form>
  );
}
