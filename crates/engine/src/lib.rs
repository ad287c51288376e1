//! Build engine: the embedding API (Builder, BuildRequest, progress events) that executes a planned Dockerfile
