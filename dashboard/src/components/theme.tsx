// Dark/light: follows the system until the user picks one; the pick is remembered.
import { createContext, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

type Choice = "system" | "light" | "dark";
const KEY = "iotmon.theme";

const ThemeContext = createContext<{ dark: boolean; choice: Choice; setChoice: (c: Choice) => void }>({
  dark: false,
  choice: "system",
  setChoice: () => undefined,
});

function systemDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

export function ThemeProvider({ children }: { children: ReactNode }) {
  const [choice, setChoiceState] = useState<Choice>(
    () => (localStorage.getItem(KEY) as Choice | null) ?? "system",
  );
  const [system, setSystem] = useState(systemDark);
  useEffect(() => {
    if (typeof matchMedia !== "function") return;
    const mq = matchMedia("(prefers-color-scheme: dark)");
    const on = () => setSystem(mq.matches);
    mq.addEventListener("change", on);
    return () => mq.removeEventListener("change", on);
  }, []);
  const dark = choice === "system" ? system : choice === "dark";
  useEffect(() => {
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  }, [dark]);
  const value = useMemo(
    () => ({
      dark,
      choice,
      setChoice: (c: Choice) => {
        localStorage.setItem(KEY, c);
        setChoiceState(c);
      },
    }),
    [dark, choice],
  );
  return <ThemeContext.Provider value={value}>{children}</ThemeContext.Provider>;
}

export function useTheme() {
  return useContext(ThemeContext);
}

export function ThemeToggle() {
  const { choice, setChoice } = useTheme();
  return (
    <label className="theme-toggle">
      <span className="sr-only">Theme</span>
      <select value={choice} onChange={(e) => setChoice(e.target.value as Choice)} aria-label="Theme">
        <option value="system">System theme</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  );
}
