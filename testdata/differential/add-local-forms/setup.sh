echo plain > p && gzip -c p > notar.gz && rm p
