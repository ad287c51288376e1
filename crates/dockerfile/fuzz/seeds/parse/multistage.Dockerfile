# syntax=docker/dockerfile:1
ARG BASE=alpine:3.19
ARG VERSION

FROM ${BASE} AS build
ARG VERSION=1.0
ENV APP_VERSION=${VERSION} \
    # a comment inside a continuation is dropped
    APP_HOME=/opt/app
WORKDIR $APP_HOME
COPY . .
RUN echo "building ${APP_VERSION}" > version.txt

FROM build AS test
RUN test -f version.txt

FROM ${BASE}
LABEL org.opencontainers.image.version="1.0" description="multi word"
COPY --from=build /opt/app/version.txt /version.txt
COPY --from=0 /etc/os-release /build-os-release
EXPOSE 8080/tcp 53/udp
VOLUME ["/data"]
USER nobody
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["true"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /version.txt"]
