//! Build context: .dockerignore rules, source matching and COPY/ADD file copying inside a root
