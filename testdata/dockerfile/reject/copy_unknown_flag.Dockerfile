FROM busybox
COPY --frm=a b c
