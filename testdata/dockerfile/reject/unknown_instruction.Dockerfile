FROM busybox
RUN true
FOOO bar
