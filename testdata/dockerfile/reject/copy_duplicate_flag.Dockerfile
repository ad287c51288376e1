FROM busybox
COPY --from=a --from=b c d
