# syntax=docker/dockerfile:1
FROM busybox
ARG NAME=world
RUN <<EOF
echo "hello $NAME" > /greeting
EOF
COPY <<-EOT /etc/motd
	welcome ${NAME}
	EOT
RUN cat <<'RAW' > /raw
$NAME stays
RAW
