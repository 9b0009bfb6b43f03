"""mcp-tenants: multi-tenant MCP servers for PostgreSQL and S3-compatible object stores."""

__version__ = "0.1.0"
