ARG TARGETPLATFORM
FROM --platform=$BUILDPLATFORM busybox AS builder
ARG TARGETOS
ARG TARGETARCH
RUN echo "$TARGETOS/$TARGETARCH" > /arch
ARG HTTP_PROXY
RUN echo proxy=$HTTP_PROXY

FROM busybox
COPY --from=builder /arch /arch
