import { setupServer } from "msw/node";

/** Tests add their handlers with `server.use(http.get("/api/...", ...))`. */
export const server = setupServer();
