"""The farm's Redis data model, in one place: key names (`keys`), hash field names (`fields`),
the Lua scripts (`scripts`), and the operations on build and deployment records (`builds`,
`deployments`), each written once and run by a thin adapter (`call`): async in the API,
blocking in the worker."""
