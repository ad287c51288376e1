FROM busybox
# Not valid JSON: Docker runs it through the shell.
CMD [echo, "hi"]
RUN ["echo", "exec form"]
SHELL ["/bin/sh", "-c"]
RUN echo after shell
