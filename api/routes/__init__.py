"""The job API's routers, one module per resource."""
