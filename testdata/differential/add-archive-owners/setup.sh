mkdir -p t/d && echo a > t/d/a && echo b > t/b && echo h > t/d/hard && ln t/d/hard t/hard2
mkfifo t/fifo
tar --numeric-owner --owner=1234 --group=5678 -C t -cf owned.tar d b hard2 fifo
rm -rf t
