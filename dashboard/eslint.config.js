import { readdirSync } from "node:fs";

import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

// bulletproof-react: a feature never imports another feature; app/ composes them.
const features = readdirSync(new URL("./src/features", import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);

const noCrossFeatureImports = features.map((feature) => ({
  files: [`src/features/${feature}/**/*.{ts,tsx}`],
  rules: {
    "no-restricted-imports": [
      "error",
      {
        patterns: [
          ...(features.length > 1
            ? [
                {
                  group: features
                    .filter((other) => other !== feature)
                    .flatMap((other) => [`@/features/${other}`, `@/features/${other}/*`]),
                  message: "No imports across features: compose them in src/app.",
                },
              ]
            : []),
          { group: ["../../*"], message: "Use the @/ alias to leave a feature." },
          { group: ["@/app", "@/app/*"], message: "Features do not import the app." },
        ],
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ["dist", "node_modules", "coverage"] },
  {
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    files: ["**/*.{ts,tsx}"],
    languageOptions: { ecmaVersion: 2022, globals: { ...globals.browser } },
    plugins: { "react-hooks": reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["../../*"], message: "Use the @/ alias." }] },
      ],
    },
  },
  {
    files: ["src/components/**/*.{ts,tsx}", "src/lib/**/*.{ts,tsx}", "src/utils/**/*.{ts,tsx}"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["@/features/*", "@/app/*"], message: "Shared code does not import features." },
          ],
        },
      ],
    },
  },
  ...noCrossFeatureImports,
  { files: ["*.config.{js,ts}"], languageOptions: { globals: { ...globals.node } } },
);
