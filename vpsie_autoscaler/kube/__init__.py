"""The Kubernetes API adapter: the only package that imports kubernetes_asyncio.

It speaks raw JSON, sets an explicit timeout on every call and maps errors to typed exceptions."""
