"""A real OAuth authorization server for the tests (``issuer.mjs`` on the npm package oidc-provider)."""
