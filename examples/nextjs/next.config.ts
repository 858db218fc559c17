import type { NextConfig } from "next";

const config: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // This folder is the whole app: never look above it for a workspace root.
  turbopack: { root: __dirname },
};

export default config;
