FROM busybox
EXPOSE
