mkdir -p empty nested/also-empty
: > zero-bytes
mkfifo a-fifo
