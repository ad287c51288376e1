FROM busybox AS 1stage
