# syntax=docker/dockerfile:1.7-labs
FROM busybox AS src
RUN mkdir -p /src/a/b && touch /src/a/b/c.txt /src/a/skip.md

FROM busybox
COPY --from=src --parents --exclude=*.md /src/./a /dst/
COPY --link --chown=1000:1000 --chmod=0644 --from=src /src/a/b/c.txt /c.txt
ADD --keep-git-dir=true --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/x.tar.gz /x
RUN --mount=type=cache,target=/var/cache/apk,sharing=locked \
    --mount=type=bind,from=src,source=/src,target=/mnt \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=secret,id=token,required=false \
    --mount=type=ssh \
    --network=none \
    ls /mnt
