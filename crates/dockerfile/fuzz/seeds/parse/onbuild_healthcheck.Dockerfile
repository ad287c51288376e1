FROM busybox
ONBUILD RUN echo triggered
ONBUILD COPY a /a
HEALTHCHECK NONE
HEALTHCHECK --start-period=10s CMD wget -q -O- http://localhost/ || exit 1
